"""Log records as an operator's tools read them: fields as ``key=value`` in text and as keys in JSON, secrets
masked in fields too, captured warnings on one line."""

from __future__ import annotations

import json
import logging

import pytest

from imagesync.cli import logs
from imagesync.util import logfields, redact


def record(message: str, level: int = logging.INFO, /, **values: str | int | float | None) -> logging.LogRecord:
    item = logging.LogRecord("imagesync.test", level, __file__, 1, message, None, None)
    item.__dict__.update(logfields.fields(**values))
    return item


@pytest.mark.parametrize(("value", "rendered"), [
    ("demo", "demo"),
    ("demo/demo-alpine", "demo/demo-alpine"),
    ("two words", '"two words"'),
    ("", '""'),
    ('say "hi"', '"say \\"hi\\""'),
    ("x result=done", '"x result=done"'),
    ("back\\slash", '"back\\\\slash"'),
    (65536, "65536"),
    (0.051, "0.051"),
])
def test_text_renders_each_field_as_one_unambiguous_pair(value: str | int | float, rendered: str) -> None:
    line = logs.TextFormatter().format(record("image added", image=value, result="done"))
    assert line.endswith(f" INFO imagesync.test: image added image={rendered} result=done")


def test_text_field_values_are_escaped_onto_one_line() -> None:
    line = logs.TextFormatter().format(record("list failed", list="evil\n2026-01-01T00:00:00 ERROR x\x1b[2J"))
    assert line.endswith(' list failed list="evil\\n2026-01-01T00:00:00 ERROR x\\x1b[2J"')
    assert len(line.splitlines()) == 1


def test_none_fields_are_left_out_and_a_record_without_fields_is_unchanged() -> None:
    assert logs.TextFormatter().format(record("image kept", target_id=None)).endswith(": image kept")
    plain = logging.LogRecord("imagesync.test", logging.INFO, __file__, 1, "plain %s", ("text",), None)
    assert logs.TextFormatter().format(plain).endswith(" INFO imagesync.test: plain text")
    assert "target_id" not in json.loads(logs.JsonFormatter().format(record("x", target_id=None)))


def test_json_carries_fields_as_keys_with_their_types() -> None:
    entry = json.loads(logs.JsonFormatter().format(record(
        "image added", list="demo", image="a", version="1.0", target="t", action="add", result="done",
        bytes=65536, seconds=0.25, message="not the message")))
    assert entry["message"] == "image added" and entry["level"] == "info" and entry["logger"] == "imagesync.test"
    assert (entry["list"], entry["action"], entry["bytes"], entry["seconds"]) == ("demo", "add", 65536, 0.25)


def test_secrets_in_fields_are_masked_in_every_format() -> None:
    redact.register("field-secret-991")
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        handler = logging.Handler()
        item = record("list failed", logging.ERROR, error="GET https://u:field-secret-991@h/l: 401")
        logs.ScrubbingFilter().filter(item)
        handler.setFormatter(formatter)
        line = handler.format(item)
        assert "field-secret-991" not in line and "https://***@h/l" in line


def test_a_captured_warning_loses_its_source_line_not_its_message() -> None:
    text = "/lib/x.py:12: UserWarning: first line\nsecond line\n  warnings.warn(msg)\n"
    item = logging.LogRecord("py.warnings", logging.WARNING, __file__, 1, "%s", (text,), None)
    logs.WarningText().filter(item)
    assert item.getMessage() == "/lib/x.py:12: UserWarning: first line\nsecond line"
