"""gunicorn entry point for Glance: oslo.config would otherwise parse gunicorn's own argv and crash the worker.

The dev cloud keeps Glance's database in SQLite, where a production cloud has MySQL. SQLite starts a transaction
as a reader and upgrades it at the first write; two requests doing that at once (two image creates, as parallel
uploads send) deadlock, and SQLite fails one at once with "database is locked" (HTTP 500) instead of making it
wait. Starting every transaction with BEGIN IMMEDIATE makes writers queue for the lock (up to the driver's
5-second busy timeout), as they would on MySQL.
"""

import importlib
import sys
from typing import Any

sys.argv = sys.argv[:1]
# SQLAlchemy lives in the dev cloud's venv only, not in the project's (where mypy reads this file).
sqlalchemy: Any = importlib.import_module("sqlalchemy")


def _begin_immediate(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                     executemany: bool) -> tuple[str, Any]:
    # oslo.db already begins SQLite transactions itself, with a plain (deferred) BEGIN: make it take the lock.
    return ("BEGIN IMMEDIATE" if statement.strip().upper() == "BEGIN" else statement), parameters


sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", _begin_immediate, retval=True)
application = importlib.import_module("glance.wsgi.api").application
