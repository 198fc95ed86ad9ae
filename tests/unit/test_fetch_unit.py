"""Pure helpers of imagesync.sources.hepix.fetch and of the demo list server, as tables."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagesync.demo.handler import Unsatisfiable, byte_range, not_modified
from imagesync.net.failures import retry_after
from imagesync.sources.hepix.fetch import is_local, split_userinfo


@pytest.mark.parametrize(
    ("url", "clean", "token"),
    [
        ("https://T0K:x-oauth-basic@host/a/image.list", "https://host/a/image.list", "T0K"),
        ("https://T0K@host:8443/x?y=1", "https://host:8443/x?y=1", "T0K"),
        ("https://a%40b@host/x", "https://host/x", "a@b"),
        ("https://host/x", "https://host/x", None),
        ("https://host/x@y", "https://host/x@y", None),  # an @ in the path is not userinfo
        ("/etc/lists/x.list", "/etc/lists/x.list", None),
    ],
)
def test_split_userinfo(url: str, clean: str, token: str | None) -> None:
    assert split_userinfo(url) == (clean, token)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_", min_size=8, max_size=40))
def test_split_userinfo_removes_any_token_from_the_url(token: str) -> None:
    clean, found = split_userinfo(f"https://{token}:x-oauth-basic@vmcaster.example/store/vo/v/image.list")
    assert found == token and token not in clean


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("7", 7.0), (" 0 ", 0.0), ("100000", 300.0), ("soon", None), ("-5", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after(email.utils.formatdate(now + 42, usegmt=True), now=now) == 42.0
    assert retry_after(email.utils.formatdate(now - 42, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("url", "local"),
    [("file:///x/y.list", True), ("/x/y.list", True), ("lists/y.list", True), ("https://h/x", False),
     ("HTTP://h/x", False)],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local


@pytest.mark.parametrize(
    ("header", "span"),
    [(None, None), ("bytes=0-", (0, 9)), ("bytes=3-5", (3, 5)), ("bytes=3-99", (3, 9)), ("bytes=9-", (9, 9)),
     ("bytes=1-2,4-5", None), ("items=1-2", None), ("bytes=-3", None)],
)
def test_byte_range(header: str | None, span: tuple[int, int] | None) -> None:
    assert byte_range(header, 10) == span


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=5-4", "bytes=100-200"])
def test_byte_range_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, 10)


MTIME = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, False),
        ({"If-None-Match": '"abc"'}, True),
        ({"If-None-Match": 'W/"abc"'}, True),
        ({"If-None-Match": '"x", "abc"'}, True),
        ({"If-None-Match": "*"}, True),
        ({"If-None-Match": '"x"', "If-Modified-Since": email.utils.formatdate(MTIME, usegmt=True)}, False),
        ({"If-Modified-Since": email.utils.formatdate(MTIME, usegmt=True)}, True),
        ({"If-Modified-Since": email.utils.formatdate(MTIME - 1, usegmt=True)}, False),
        ({"If-Modified-Since": "garbage"}, False),
    ],
)
def test_not_modified(headers: dict[str, str], expected: bool) -> None:
    assert not_modified(headers, '"abc"', MTIME) is expected
