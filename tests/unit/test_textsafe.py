"""Text from lists and servers is shown as one line with visible escapes, and never makes an encoder raise."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagesync.cli import logs
from imagesync.util import textsafe


@pytest.mark.parametrize(("text", "expected"), [
    ("plain /DC=org/CN=Foo\\, Bar ünïcödé", "plain /DC=org/CN=Foo\\, Bar ünïcödé"),
    ("a\nb\r\nc\td", "a\\nb\\r\\nc\\td"),
    ("\x1b[2J\x07\x00\x7f", "\\x1b[2J\\x07\\x00\\x7f"),
    ("next\x85line", "next\\x85line"),
    ("\u2028\u2029", "\\u2028\\u2029"),
    ("abc\u202edef\u2066", "abc\\u202edef\\u2066"),
    ("half \ud800 pair \udfff", "half \\ud800 pair \\udfff"),
    ("\x0b\x0c\x1c\x1d\x1e", "\\x0b\\x0c\\x1c\\x1d\\x1e"),
])
def test_one_line(text: str, expected: str) -> None:
    assert textsafe.one_line(text) == expected


@given(st.text())
def test_one_line_is_one_encodable_line(text: str) -> None:
    shown = textsafe.one_line(text)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")  # strict: no lone surrogate is left


@given(st.recursive(st.none() | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_json_text_round_trips_and_encodes(value: object) -> None:
    dumped = textsafe.json_text(json.dumps(value, ensure_ascii=False))
    dumped.encode("utf-8")
    assert len(dumped.splitlines()) <= 1
    assert json.loads(dumped) == value


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("imagesync.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_text_log_record_is_one_line_whatever_its_arguments() -> None:
    line = logs.TextFormatter().format(record("image=%s result=%s", "x\n2026-01-01T00:00:00 ERROR forged", "ok\x1b"))
    assert line.endswith(" WARNING imagesync.test: image=x\\n2026-01-01T00:00:00 ERROR forged result=ok\\x1b")
    assert len(line.splitlines()) == 1


def test_traceback_stays_multi_line_but_never_at_the_margin() -> None:
    try:
        raise ValueError("bad\nFORGED record\x1b[2J")
    except ValueError as exc:
        caught = exc
    text = logs.TextFormatter().format(record("failed", exc=caught))
    first, *rest = text.splitlines()
    assert first.endswith("WARNING imagesync.test: failed")
    assert rest[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in rest)
    assert "  FORGED record\\x1b[2J" in rest


def test_json_log_record_survives_a_lone_surrogate() -> None:
    line = logs.JsonFormatter().format(record("title=%s", "half \ud800\u2028"))
    line.encode("utf-8")
    assert json.loads(line)["message"] == "title=half \ud800\u2028"

