"""Logging set-up: one handler on stderr, text or JSON lines, every record scrubbed of secrets and escaped.

Records carry fields from lists and servers: a text record is rendered as exactly one line (see
:mod:`imagesync.textsafe`), so nothing a publisher writes can forge a record or drive the terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from imagesync.redact import RedactingFilter
from imagesync.textsafe import json_text, one_line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json_text(json.dumps(entry, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` as one escaped line; a traceback (``-v``) follows with every line indented,
    so a line at the left margin is always a real record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        details = [record.exc_text or "", self.formatStack(record.stack_info) if record.stack_info else ""]
        # splitlines() breaks at every Unicode line boundary, so no piece of a detail escapes the indentation.
        indented = ["  " + one_line(line) for detail in details for line in detail.splitlines()]
        return "\n".join([one_line(self.formatMessage(record)), *indented])


def configure(level: int, fmt: str) -> None:
    """Route the ``imagesync`` loggers to stderr at ``level`` in ``fmt`` (text | json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
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
