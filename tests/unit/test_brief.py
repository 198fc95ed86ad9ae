"""errors.brief: a library's message bounded to one line for our own messages, never cut in the middle of a word."""

from __future__ import annotations

import pytest

from imagesync.errors import brief


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("short enough", 200, "short enough"),
    ("one two three four", 12, "one two ..."),
    ("one two three four", 13, "one two three ..."),
    ("Caused by NewConnectionError('HTTPConnection object'): refused", 45,
     "Caused by NewConnectionError('HTTPConnection ..."),
    ("a,   b;  c", 200, "a, b; c"),
    ("https://a.very.long/url/without/blanks", 10, "https://a. ..."),
])
def test_brief_never_cuts_a_word_in_half(text: str, limit: int, expected: str) -> None:
    assert brief(ValueError(text), limit) == expected
