"""Keep secrets out of every line that leaves the process.

Secrets are registered once (when the configuration is loaded) and scrubbed from any text that is logged,
reported or raised; URLs additionally lose their userinfo, so an embedded AppDB token never shows.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
# userinfo in any URL-looking token inside free text (error messages from requests embed URLs).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`text` masks it from now on."""
    # Very short values would mask ordinary words and hide real diagnostics.
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)


_SECRET_KEYS = ("password", "secret", "token")


def register_options(options: dict[str, str]) -> None:
    """Register the values of credential options (password, *_secret, token, ...); ``*_file`` keys name paths
    and ``*_env`` keys environment variables, not secrets."""
    for key, value in options.items():
        if not key.endswith(("_file", "_env")) and any(part in key for part in _SECRET_KEYS):
            register(value)


def text(value: str) -> str:
    """Return ``value`` with URL userinfo and every registered secret masked."""
    value = _USERINFO.sub(lambda m: f"{m.group('scheme')}{_MASK}@", value)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        value = value.replace(secret, _MASK)
    return value


def url(value: str) -> str:
    """Return ``value`` without userinfo and with secrets in path or query masked."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return text(value)
    if parts.username is not None or parts.password is not None:
        # The netloc text after the userinfo, not hostname/port: .port raises on a port that is no number.
        parts = parts._replace(netloc=f"{_MASK}@{parts.netloc.rpartition('@')[2]}")
    return text(urlunsplit(parts))


class RedactingFilter(logging.Filter):
    """Logging filter that renders each record's message once and scrubs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks (shown with -v) repeat exception messages; render them scrubbed too.
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
