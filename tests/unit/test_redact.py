"""Secrets never leave the process: URL userinfo and registered secrets are masked, also in log records."""

from __future__ import annotations

import logging

import pytest

from imagesync.util import redact


@pytest.mark.parametrize(("url", "expected"), [
    ("https://TOKEN123:x-oauth-basic@host.example/p?q=1", "https://***@host.example/p?q=1"),
    ("https://TOKEN123@host.example:8443/p", "https://***@host.example:8443/p"),
    ("https://host.example/p", "https://host.example/p"),
    ("/etc/lists/local.list", "/etc/lists/local.list"),
])
def test_url(url: str, expected: str) -> None:
    assert redact.url(url) == expected


def test_registered_secret_masked_in_free_text() -> None:
    redact.register("very-secret-value-1")
    assert redact.text("401 for very-secret-value-1 at https://u:p@h/x") == "401 for *** at https://***@h/x"


def test_short_values_are_not_registered() -> None:
    redact.register("abc")
    assert redact.text("abc") == "abc"


def test_log_filter_scrubs_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    redact.register("tok-in-log-77")
    logger = logging.getLogger("imagesync.test_redact")
    logger.addFilter(redact.RedactingFilter())
    try:
        raise RuntimeError("boom tok-in-log-77")
    except RuntimeError:
        with caplog.at_level(logging.DEBUG, logger="imagesync.test_redact"):
            logger.error("fetch %s failed", "https://tok-in-log-77@h/l", exc_info=True)
    assert "tok-in-log-77" not in caplog.text
    assert "***" in caplog.text
