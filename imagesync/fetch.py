"""List URL -> bytes: conditional GET, token, retries with backoff, size cap, truncation check, redaction.

Trust for HTTPS is the system store plus every CA in the grid CA directory (``ca_dir``), applied through our own
SSL context on a mounted adapter, so REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE cannot replace it: a bundle named by
those variables is honoured only as an *addition* (what operators expect of them, and it never drops the grid
CAs). Proxies from the environment keep working because ``trust_env`` stays on.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, ReadTimeoutError

from imagesync import __version__, redact
from imagesync.errors import FetchError

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_BACKOFF_CAP = 60.0
_RETRY_AFTER_CAP = 300.0
# IGTF directories hold certificates as <hash>.N next to CRLs (.rN), policies and info files.
_CA_FILE = re.compile(r"^[0-9a-f]{8}\.\d+$|\.(pem|crt)$")
_ENV_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class FetchPolicy:
    """How patient and how trusting a fetch is."""

    connect_timeout: float = 10.0
    timeout: float = 60.0  # read timeout: seconds without progress
    retries: int = 5  # extra attempts after the first, on connection errors, 429 and 5xx
    backoff: float = 1.0  # base seconds of the exponential backoff
    max_bytes: int = 32 * 1024 * 1024
    ca_dir: Path | None = None  # grid CAs trusted in addition to the system store


@dataclass(frozen=True)
class Fetched:
    """What a fetch produced; ``content`` is None only when the server said 304."""

    content: bytes | None
    not_modified: bool
    etag: str | None
    last_modified: str | None


class AttemptFailed(Exception):
    """One failed attempt: the operator's message and hint, and whether trying again may help."""

    def __init__(self, message: str, hint: str, *, retry: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.retry = retry
        self.retry_after = retry_after


class _TrustAdapter(HTTPAdapter):
    """An adapter whose TLS trust is our SSL context, whatever ``verify`` requests computed from the environment."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: Any,
                                             cert: Any = None) -> Any:
        # ``verify`` (possibly an env bundle path) is deliberately ignored: the pool key carries our context.
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
        pool: dict[str, Any] = dict(pool_kwargs)
        pool.pop("ca_certs", None)
        pool.pop("ca_cert_dir", None)
        pool.update(ssl_context=self._context, cert_reqs="CERT_REQUIRED")
        return host_params, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # urllib3 would load these files *into our context* on connect: trust must come from the context alone.
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.cert_reqs = "CERT_REQUIRED"


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
                    suffix = f"; gave up after {attempt + 1} attempts" if failed.retry else ""
                    raise FetchError(redact.text(failed.message + suffix), subject=name,
                                     hint=failed.hint) from failed.__cause__
                delay = self._delay(attempt, failed.retry_after)
                log.debug("list=%s url=%s attempt=%d failed: %s; retry in %.1fs",
                          name, redact.url(clean), attempt + 1, failed.message, delay)
                self._sleep(delay)
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return float(min(self._policy.backoff * 2**attempt, _BACKOFF_CAP))

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


def trusting_session(ca_dir: Path | None, session: requests.Session | None = None) -> requests.Session:
    """``session`` (or a new one) set up to trust the system store plus ``ca_dir``, whatever the environment's
    CA bundle variables say. Raises FetchError if ``ca_dir`` cannot be read."""
    session = session or requests.Session()
    session.headers["User-Agent"] = f"imagesync/{__version__}"
    session.mount("https://", _TrustAdapter(trust_context(ca_dir)))
    return session


def trust_context(ca_dir: Path | None) -> ssl.SSLContext:
    """System store + every CA file in ``ca_dir`` + the env bundle if set. Raises FetchError on an unreadable dir."""
    context = ssl.create_default_context()
    if ca_dir is not None:
        try:
            entries = sorted(p for p in Path(ca_dir).iterdir() if _CA_FILE.search(p.name) and p.is_file())
        except OSError as exc:
            raise FetchError(f"cannot read CA directory {ca_dir}: {exc.strerror}",
                             hint="check trust.ca_dir") from exc
        for entry in entries:
            try:
                context.load_verify_locations(cafile=str(entry))
            except (ssl.SSLError, OSError) as exc:
                log.debug("skipping %s in CA directory: %s", entry, exc)
    for variable in _ENV_BUNDLES:
        bundle = os.environ.get(variable)
        if bundle:
            _add_env_bundle(context, variable, bundle)
    return context


def _add_env_bundle(context: ssl.SSLContext, variable: str, bundle: str) -> None:
    try:
        if os.path.isdir(bundle):
            context.load_verify_locations(capath=bundle)
        else:
            context.load_verify_locations(cafile=bundle)
    except (ssl.SSLError, OSError) as exc:
        log.warning("ignoring %s=%s: %s", variable, bundle, exc)


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


def check_status(response: requests.Response, url: str, *, token_sent: bool) -> None:
    """Raise AttemptFailed for any status but 2xx and 304; 429 and 5xx are marked retryable."""
    code = response.status_code
    where = f"cannot fetch {redact.url(url)}: HTTP {code}"
    if 200 <= code < 300 or code == 304:
        return
    if code == 429 or code >= 500:
        after = retry_after(response.headers.get("Retry-After"))
        raise AttemptFailed(where, "server busy or failing; try again later", retry=True, retry_after=after)
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
        if _has(exc, ReadTimeoutError, TimeoutError):
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


def request_failure(exc: requests.RequestException, url: str, policy: FetchPolicy) -> AttemptFailed:
    """Turn a requests exception raised before any response into a AttemptFailed with an operator's message."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"cannot fetch {redact.url(url)}"
    verify = _find(exc, ssl.SSLCertVerificationError)
    if verify is not None:
        detail = redact.text(str(verify.verify_message or verify.reason or ""))
        return AttemptFailed(f"{where}: TLS certificate of {host} not trusted (system store + ca_dir): {detail}",
                       f"is the server's CA in {policy.ca_dir or 'the CA directory'}?")
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


def _connection_failure(exc: BaseException, where: str, host: str, port: int | None) -> AttemptFailed:
    if _has(exc, NameResolutionError, socket.gaierror):
        return AttemptFailed(f"{where}: cannot resolve host {host}", "check the URL and DNS", retry=True)
    if _has(exc, ConnectionRefusedError):
        return AttemptFailed(f"{where}: connection refused by {host}:{port or 'default port'}", "is the server up?",
                       retry=True)
    if _has(exc, ConnectionResetError, RemoteDisconnected, BrokenPipeError):
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


def _has(exc: BaseException, *kinds: type[BaseException]) -> bool:
    return any(isinstance(item, kinds) for item in _causes(exc))
