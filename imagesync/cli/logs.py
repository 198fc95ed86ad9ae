"""Logging set-up: stderr (and optionally syslog), text or JSON lines, every record scrubbed of secrets and escaped.

Records carry fields from lists and servers: a text record is rendered as exactly one line (see
:mod:`imagesync.util.textsafe`), so nothing a publisher writes can forge a record or drive the terminal.

Records that describe a list, an image or an action carry their facts as fields (``extra=fields(list=...,
result=...)``): the text formatter appends them as ``key=value`` (quoted where a value has blanks, quotes or
``=``), the JSON formatter writes them as keys of the object, so a log pipeline needs no parsing of ``message``.

Handlers sit on the root logger, so every library logger (urllib3, keystoneauth, gnupg, ...) and every
``warnings.warn`` goes through the same formatter and redactor instead of Python's bare last-resort output.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from imagesync.util import redact
from imagesync.util.logfields import FIELDS, FieldValue, record_fields
from imagesync.util.redact import RedactingFilter
from imagesync.util.textsafe import json_text, one_line

# A value written bare in text: anything else is quoted, so a value can never pose as a further field.
_BARE = re.compile(r'[^\s"=\\]+')
# Libraries whose debug output -v shows; the others stay at WARNING (keystoneauth's debug dumps requests).
_VERBOSE_LIBRARIES = ("urllib3", "gnupg")


def logfmt(values: dict[str, FieldValue]) -> str:
    """``key=value`` pairs; a value with blanks, quotes, ``=`` or backslashes is double-quoted and escaped."""
    return " ".join(f"{key}={_quoted(str(value))}" for key, value in values.items())


def _quoted(text: str) -> str:
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ScrubbingFilter(RedactingFilter):
    """Masks secrets in the message, the traceback and every string field."""

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        values = record_fields(record)
        if values:
            setattr(record, FIELDS, {k: redact.text(v) if isinstance(v, str) else v for k, v in values.items()})
        return True


class WarningText(logging.Filter):
    """A captured ``warnings.warn`` without the source line Python appends to it (the file and line stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = record.getMessage().rstrip("\n").split("\n")
        if len(lines) > 1 and lines[-1].startswith("  "):
            lines.pop()
        record.msg, record.args = "\n".join(lines), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            entry.setdefault(key, value)  # a field never overwrites what every record has
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json_text(json.dumps(entry, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` as one escaped line; a traceback (``-v``) follows with every
    line indented, so a line at the left margin is always a real record. Without ``timestamps`` (syslog stamps
    its records itself) the time is left out."""

    def __init__(self, *, timestamps: bool = True) -> None:
        stamp = "%(asctime)s " if timestamps else ""
        super().__init__(f"{stamp}%(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        values = record_fields(record)
        message = record.getMessage()
        record.message = " ".join(part for part in (message, logfmt(values)) if part)
        record.asctime = self.formatTime(record, self.datefmt)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        details = [record.exc_text or "", self.formatStack(record.stack_info) if record.stack_info else ""]
        # splitlines() breaks at every Unicode line boundary, so no piece of a detail escapes the indentation.
        indented = ["  " + one_line(line) for detail in details for line in detail.splitlines()]
        return "\n".join([one_line(self.formatMessage(record)), *indented])


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so a second :func:`configure` replaces it and leaves other handlers (a test's capture) alone."""


class _Syslog(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # Best effort, as C's syslog(3): a syslog daemon that went away must not fill stderr with tracebacks
        # (stderr still gets every record -q lets through).
        pass


def _formatter(fmt: str, *, timestamps: bool = True) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter(timestamps=timestamps)


def _remove(*kinds: type[logging.Handler]) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, kinds)]:
        root.removeHandler(old)
        old.close()


def _install(handler: logging.Handler, formatter: logging.Formatter) -> None:
    handler.addFilter(ScrubbingFilter())
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)


def configure(level: int, fmt: str, *, quiet: bool = False) -> None:
    """Route every logger to stderr in ``fmt`` (text | json): imagesync's at ``level``, libraries' at WARNING
    (urllib3 and gnupg follow ``level`` down to DEBUG), Python warnings as records of ``py.warnings``. With
    ``quiet`` only ERROR and above reach stderr (other handlers still get ``level``). Raises nothing."""
    root = logging.getLogger()
    _remove(_Stderr, _Syslog)
    root.setLevel(logging.WARNING)
    handler = _Stderr(sys.stderr)
    handler.setLevel(logging.ERROR if quiet else logging.NOTSET)
    _install(handler, _formatter(fmt))
    ours = logging.getLogger("imagesync")
    ours.handlers.clear()
    ours.setLevel(level)
    ours.propagate = True
    for name in _VERBOSE_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.NOTSET)
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    if not any(isinstance(f, WarningText) for f in warned.filters):
        warned.addFilter(WarningText())




def add_syslog(socket_path: Path, facility: str, fmt: str) -> None:
    """Also send every record to the syslog daemon at the unix socket ``socket_path`` (``/dev/log``), whatever
    ``-q`` says; replaces an earlier syslog handler. A socket that does not exist is logged as a warning and
    skipped. Raises nothing."""
    _remove(_Syslog)
    if not socket_path.exists():
        logging.getLogger(__name__).warning("log.syslog: %s does not exist (no syslog daemon listening?): "
                                            "logging to stderr only", socket_path)
        return
    handler = _Syslog(address=str(socket_path), facility=_Syslog.facility_names[facility])
    handler.ident = f"imagesync[{os.getpid()}]: "
    _install(handler, _formatter(fmt, timestamps=False))
