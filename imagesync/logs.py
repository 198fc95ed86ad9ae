"""Logging set-up: one handler on stderr, text or JSON lines, every record scrubbed of secrets."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from imagesync.redact import RedactingFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int, fmt: str) -> None:
    """Route the ``imagesync`` loggers to stderr at ``level`` in ``fmt`` (text | json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("imagesync")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # Library loggers (urllib3, gnupg) are chatty and may print URLs: only with -v, and scrubbed as well.
    for name in ("urllib3", "gnupg"):
        other = logging.getLogger(name)
        other.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
        other.handlers = [handler]
        other.propagate = False
