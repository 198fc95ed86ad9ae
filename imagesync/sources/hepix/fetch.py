"""List URL -> bytes: conditional GET, token, retries with backoff, size cap, truncation check, redaction.

HTTPS trust (system store + grid CA directory) is set up in :mod:`imagesync.net.tls`; how a failed attempt is
worded and whether it is retried is decided in :mod:`imagesync.net.failures`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

import requests
from urllib3.exceptions import ReadTimeoutError

from imagesync.errors import FetchError
from imagesync.net.failures import AttemptFailed, check_status, has_cause, request_failure
from imagesync.net.policy import FetchPolicy
from imagesync.net.tls import trusting_session
from imagesync.util import redact

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_BACKOFF_CAP = 60.0


@dataclass(frozen=True)
class Fetched:
    """What a fetch produced; ``content`` is None only when the server said 304."""

    content: bytes | None
    not_modified: bool
    etag: str | None
    last_modified: str | None


class Fetcher:
    """Fetches lists (and signatures) over HTTP(S) or from disk; one HTTP session for its lifetime."""

    def __init__(self, policy: FetchPolicy, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Build the trust context and the session. Raises FetchError if ``policy.ca_dir`` cannot be read."""
        self._policy = policy
        self._sleep = sleep
        self._session = trusting_session(policy.ca_dir, session)

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def fetch(self, url: str, *, name: str, token: str | None = None, etag: str | None = None,
              last_modified: str | None = None) -> Fetched:
        """Fetch ``url`` for list ``name``. Raises FetchError (subject ``name``) naming what failed and a hint."""
        clean, url_token = split_userinfo(url)
        token = token or url_token
        redact.register(token)
        if is_local(clean):
            return read_local(clean, name, self._policy.max_bytes)
        headers = {"If-None-Match": etag} if etag else {}
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        auth = (token, "x-oauth-basic") if token else None
        for attempt in range(self._policy.retries + 1):
            log.debug("list=%s url=%s attempt=%d", name, redact.url(clean), attempt + 1)
            try:
                return self._attempt(clean, headers, auth, etag, last_modified)
            except AttemptFailed as failed:
                if not failed.retry or attempt == self._policy.retries:
                    suffix = f"; gave up after {attempt + 1} attempt{'s' if attempt else ''}" if failed.retry else ""
                    raise FetchError(redact.text(failed.message + suffix), subject=name,
                                     hint=failed.hint) from failed.__cause__
                delay = self._delay(attempt, failed.retry_after)
                log.debug("list=%s url=%s attempt=%d failed: %s; retry in %.1fs",
                          name, redact.url(clean), attempt + 1, failed.message, delay)
                self._sleep(delay)
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._policy.max_delay)
        return float(min(self._policy.backoff * 2**attempt, _BACKOFF_CAP, self._policy.max_delay))

    def _attempt(self, url: str, headers: dict[str, str], auth: tuple[str, str] | None, etag: str | None,
                 last_modified: str | None) -> Fetched:
        timeout = (self._policy.connect_timeout, self._policy.timeout)
        try:
            response = self._session.get(url, headers=headers, auth=auth, stream=True, timeout=timeout)
        except requests.RequestException as exc:
            raise request_failure(exc, url, self._policy) from exc
        with response:
            check_status(response, url, token_sent=auth is not None)
            if response.status_code == 304:
                log.debug("url=%s not modified", redact.url(url))
                return Fetched(None, True, response.headers.get("ETag", etag),
                               response.headers.get("Last-Modified", last_modified))
            content = read_body(response, url, self._policy)
            return Fetched(content, False, response.headers.get("ETag"), response.headers.get("Last-Modified"))


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``https://TOKEN[:x-oauth-basic]@host/p`` -> (``https://host/p``, TOKEN); other URLs are returned unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if password and password != "x-oauth-basic":  # noqa: S105 - the AppDB convention, not a secret
        redact.register(unquote(password))  # not ours to use, but never to show either
    return urlunsplit(parts._replace(netloc=host)), unquote(user) or None


def is_local(url: str) -> bool:
    """True for ``file://`` URLs and plain filesystem paths."""
    scheme = urlsplit(url).scheme.lower()
    return scheme in ("", "file")


def read_local(url: str, name: str, max_bytes: int) -> Fetched:
    """Read a ``file://`` URL or path with the size cap. Raises FetchError if missing, unreadable or too large."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"file URL with a remote host: {redact.url(url)}", subject=name,
                             hint="use file:///absolute/path")
        path = Path(url2pathname(parts.path))
    else:
        path = Path(url)
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:
                raise _too_large(str(path), max_bytes, name)
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise FetchError(f"file not found: {path}", subject=name, hint="check the path") from exc
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}", subject=name,
                         hint="check the path and its permissions") from exc
    if len(data) > max_bytes:
        raise _too_large(str(path), max_bytes, name)
    return Fetched(data, False, None, None)


def _too_large(where: str, max_bytes: int, name: str) -> FetchError:
    return FetchError(f"{where} is larger than the cap of {max_bytes} bytes", subject=name,
                      hint="not an image list, or raise the size cap")


def read_body(response: requests.Response, url: str, policy: FetchPolicy) -> bytes:
    """Stream the body under the cap; raises AttemptFailed when too large, truncated or stalled."""
    cap = policy.max_bytes
    declared = _declared_length(response)
    if declared is not None and declared > cap:
        raise AttemptFailed(f"cannot fetch {redact.url(url)}: Content-Length {declared} exceeds the cap of {cap} bytes",
                      "not an image list, or raise the size cap")
    body = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > cap:
                raise AttemptFailed(f"cannot fetch {redact.url(url)}: body exceeds the cap of {cap} bytes",
                              "not an image list, or raise the size cap")
    except requests.exceptions.ContentDecodingError as exc:
        raise AttemptFailed(f"cannot fetch {redact.url(url)}: corrupt compressed body", "check the server") from exc
    except requests.RequestException as exc:
        if has_cause(exc, ReadTimeoutError, TimeoutError):
            raise AttemptFailed(f"cannot fetch {redact.url(url)}: stalled, no data for {policy.timeout:g}s",
                          "server or network too slow", retry=True) from exc
        raise _truncated(url, len(body), declared) from exc
    if declared is not None and len(body) < declared:
        raise _truncated(url, len(body), declared)
    return bytes(body)


def _declared_length(response: requests.Response) -> int | None:
    # With a Content-Encoding the length is that of the compressed bytes; urllib3 enforces it itself.
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _truncated(url: str, got: int, declared: int | None) -> AttemptFailed:
    of = f" of {declared}" if declared is not None else ""
    return AttemptFailed(f"cannot fetch {redact.url(url)}: truncated (got {got}{of} bytes)",
                         "connection dropped; try again", retry=True)
