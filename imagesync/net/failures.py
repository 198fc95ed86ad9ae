"""Failure classification for HTTP fetches: a failed attempt as the operator's message, hint and retry verdict.

Shared by list fetches (:mod:`imagesync.sources.hepix.fetch`) and image downloads (:mod:`imagesync.images.download`)
so both word the same failure the same way and agree on what is worth retrying.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from http.client import RemoteDisconnected
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NameResolutionError

from imagesync.util import redact

if TYPE_CHECKING:
    from imagesync.net.policy import FetchPolicy

_RETRY_AFTER_CAP = 300.0
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH: the chain is trusted, the name is not.
_NAME_MISMATCH = frozenset({62, 63, 64})


class AttemptFailed(Exception):
    """One failed attempt: the operator's message and hint, and whether trying again may help."""

    def __init__(self, message: str, hint: str, *, retry: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.retry = retry
        self.retry_after = retry_after


_IMAGE_REFUSED = "images are fetched without credentials: the list must point at a public URL; tell its endorser"


def check_status(response: requests.Response, url: str, *, token_sent: bool, image: bool = False) -> None:
    """Raise AttemptFailed for any status but 2xx and 304; 429 and 5xx are marked retryable. ``image``: the URL is
    an image's (never sent a token), so 401 and 403 are the publisher's to fix, not a token setting."""
    code = response.status_code
    where = f"cannot fetch {redact.url(url)}: HTTP {code}"
    if 200 <= code < 300 or code == 304:
        return
    if code == 429 or code >= 500:
        after = retry_after(response.headers.get("Retry-After"))
        raise AttemptFailed(where, "server busy or failing; try again later", retry=True, retry_after=after)
    if image and code in (401, 403):
        raise AttemptFailed(f"{where}: access refused", _IMAGE_REFUSED)
    if code == 401:
        hint = "check token/token_file" if token_sent else "this list needs a token: set token, token_file or token_env"
        raise AttemptFailed(f"{where}: token missing or rejected", hint)
    if code == 403:
        raise AttemptFailed(f"{where}: forbidden", "check that the token grants access to this list")
    if code == 404:
        raise AttemptFailed(f"{where}: not found", "check the URL")
    reason = redact.text(str(response.reason or ""))[:80]
    raise AttemptFailed(f"{where} {reason}".rstrip(), "check the URL and the server")


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), _RETRY_AFTER_CAP)


def request_failure(exc: requests.RequestException, url: str, policy: FetchPolicy) -> AttemptFailed:
    """Turn a requests exception raised before any response into a AttemptFailed with an operator's message."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"cannot fetch {redact.url(url)}"
    verify = _find(exc, ssl.SSLCertVerificationError)
    if verify is not None:
        return _untrusted(verify, where, host, policy)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return AttemptFailed(f"{where}: connect to {host} timed out after {policy.connect_timeout:g}s",
                       "check the network and firewall", retry=True)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return AttemptFailed(f"{where}: no response within {policy.timeout:g}s (stalled)", "server too slow",
                       retry=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return AttemptFailed(f"{where}: TLS handshake with {host} failed", "check the server's TLS setup", retry=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _connection_failure(exc, where, host, parts.port)
    return AttemptFailed(f"{where}: {type(exc).__name__}", "check the URL")


def _untrusted(verify: ssl.SSLCertVerificationError, where: str, host: str, policy: FetchPolicy) -> AttemptFailed:
    detail = redact.text(str(verify.verify_message or verify.reason or "")).rstrip(".")
    if verify.verify_code in _NAME_MISMATCH:
        # Pointing at ca_dir here would send the operator after a CA that is in fact trusted.
        return AttemptFailed(f"{where}: TLS certificate of {host} is for another host ({detail})",
                             "check the host name in the URL against the server's certificate")
    return AttemptFailed(f"{where}: TLS certificate of {host} not trusted (system store + ca_dir): {detail}",
                         f"is the server's CA in {policy.ca_dir or 'the CA directory'}?")


def _connection_failure(exc: BaseException, where: str, host: str, port: int | None) -> AttemptFailed:
    if has_cause(exc, NameResolutionError, socket.gaierror):
        return AttemptFailed(f"{where}: cannot resolve host {host}", "check the URL and DNS", retry=True)
    if has_cause(exc, ConnectionRefusedError):
        return AttemptFailed(f"{where}: connection refused by {host}:{port or 'default port'}", "is the server up?",
                       retry=True)
    if has_cause(exc, ConnectionResetError, RemoteDisconnected, BrokenPipeError):
        return AttemptFailed(f"{where}: connection reset by {host}", "network or server trouble", retry=True)
    return AttemptFailed(f"{where}: connection to {host} failed", "check the network", retry=True)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, contexts, urllib3 ``reason`` and exception arguments, each once."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        stack.extend(item for item in linked if isinstance(item, BaseException))


def _find(exc: BaseException, kind: type[ssl.SSLCertVerificationError]) -> ssl.SSLCertVerificationError | None:
    return next((item for item in _causes(exc) if isinstance(item, kind)), None)


def has_cause(exc: BaseException, *kinds: type[BaseException]) -> bool:
    """True if ``exc`` or anything it wraps (see ``_causes``) is one of ``kinds``. Raises nothing."""
    return any(isinstance(item, kinds) for item in _causes(exc))
