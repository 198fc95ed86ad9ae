"""gunicorn entry point for Keystone: oslo.config would otherwise parse gunicorn's own argv and crash the worker."""

import importlib
import sys

sys.argv = sys.argv[:1]
application = importlib.import_module("keystone.wsgi.api").application
