"""The facts a log record carries as fields (``extra=fields(list=..., result=...)``), shared by every stage;
:mod:`imagesync.cli.logs` renders them (``key=value`` in text, keys of the object in JSON)."""

from __future__ import annotations

import logging

FIELDS = "imagesync_fields"
FieldValue = str | int | float


def fields(**values: FieldValue | None) -> dict[str, object]:
    """The ``extra=`` argument for a record carrying ``values`` (None values left out) as fields. Raises nothing."""
    return {FIELDS: {key: value for key, value in values.items() if value is not None}}


def record_fields(record: logging.LogRecord) -> dict[str, FieldValue]:
    """The fields a record carries (empty for a record logged without :func:`fields`)."""
    found = getattr(record, FIELDS, None)
    return found if isinstance(found, dict) else {}


# syslog facilities ``log.syslog_facility`` may name (checked by the configuration, used by the CLI's logging).
FACILITIES = ("user", "daemon", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
