"""One attempt at an image's bytes: a GET (resuming with ``Range``), the checks of its status and headers, and the
body streamed into the ``.partial`` file. Apart from :mod:`imagesync.images.download`, which decides how often to
try, where the verified file goes and what the cache holds."""

from __future__ import annotations

import http.client
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from typing import Protocol

import requests
import urllib3.exceptions

from imagesync.errors import ImagesyncError
from imagesync.images.stream import Partial, Sink, body_reader, keep_alive
from imagesync.net.failures import AttemptFailed, check_status, request_failure
from imagesync.net.guard import AddressRefused
from imagesync.net.policy import FetchPolicy
from imagesync.util import redact

# The download's own logger: operators filter on it, and an attempt is part of a download.
log = logging.getLogger("imagesync.images.download")

_MIN_BUFFER = 64 * 1024
_BACKOFF_CAP = 60.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# What a broken or stalled connection raises while the body is read, from urllib3 or http.client.
_NETWORK_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError, requests.RequestException)


class Wanted(Protocol):
    """What an attempt needs of a download request."""

    @property
    def url(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def headers(self) -> Callable[[], Mapping[str, str]] | None: ...


class Fatal(Exception):
    """The download cannot succeed by trying again; ``discard`` says whether the partial is worthless."""

    def __init__(self, message: str, hint: str, *, discard: bool) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.discard = discard


class Transfer:
    """Attempts over one session; ``count`` is told of every chunk that arrives. Thread-safe (the session is)."""

    def __init__(self, session: requests.Session, chunk_size: int, timeouts: tuple[float, float],
                 policy: FetchPolicy, count: Callable[[Partial, int], None]) -> None:
        self._session = session
        self._chunk_size = chunk_size
        self._timeouts = timeouts
        self._fetch_policy = policy
        self._count = count

    def attempt(self, request: Wanted, partial: Partial) -> None:
        """One GET of the rest of the image into ``partial``. Raises Fatal (no use retrying) or AttemptFailed."""
        if partial.length == request.size:
            return  # an earlier run got every byte but stopped before the rename: just verify
        headers = _credentials(request)
        headers["Accept-Encoding"] = "identity"  # the bytes as listed, never a compressed rendering
        if partial.length:
            headers["Range"] = f"bytes={partial.length}-"
        try:
            response = self._session.get(request.url, headers=headers, stream=True, timeout=self._timeouts)
        except AddressRefused as refused:
            raise Fatal(f"refused to download {redact.url(request.url)}: {refused}", refused.hint,
                         discard=False) from refused
        except requests.RequestException as exc:
            raise request_failure(exc, request.url, self._fetch_policy) from exc
        with response:
            self._accept(response, request, partial)
            self._stream(response, request, partial)

    def _accept(self, response: requests.Response, request: Wanted, partial: Partial) -> None:
        """Decide from status and headers whether and where this response's body goes."""
        url = redact.url(request.url)
        if response.status_code == 404:
            raise Fatal(f"not found at {url}", "check the list's hv:uri", discard=False)
        if response.status_code == 416:
            partial.reset()
            raise AttemptFailed(f"{url} refused the resume range", "restarting from zero", retry=True, retry_after=0.0)
        if response.status_code == 401 and request.headers is not None:
            # A registry's token ran out between the request for it and the GET: the next attempt asks anew.
            raise AttemptFailed(f"{url} refused the registry's credentials (HTTP 401)", "trying again with a fresh "
                                "token; check the registry account if it persists", retry=True, retry_after=0.0)
        check_status(response, request.url, token_sent=False, image=True)
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise Fatal(f"{url} sent a compressed body", "serve the image as-is", discard=False)
        if response.status_code != 206 or _range_start(response) != partial.length:
            if partial.length:
                log.debug("image=%s server ignored the range: restarting from zero", request.name)
            partial.reset()
        declared = _content_length(response)
        if declared is not None and declared != request.size - partial.length:
            raise Fatal(f"size mismatch: {url} announces {partial.length + declared} bytes, the list says "
                         f"{request.size}", "the list or the server is wrong; tell the list's endorser",
                         discard=False)

    def _stream(self, response: requests.Response, request: Wanted, partial: Partial) -> None:
        read_into = body_reader(response)
        remaining = request.size - partial.length
        # Buffers no larger than the image (plus the byte that tells "too long"): thousands of small images must
        # not each take three full-size chunks, which glibc then keeps in every download thread's arena.
        sink = Sink(partial, min(self._chunk_size, max(remaining + 1, _MIN_BUFFER)))
        try:
            while True:
                buffer = sink.buffer()
                # One byte more than expected is enough to know the server sends too much.
                n = read_into(memoryview(buffer)[: min(len(buffer), remaining + 1)])
                if not n:
                    break
                remaining -= n
                sink.put(buffer, n)
                self._count(partial, n)
                if remaining < 0:
                    raise Fatal(f"size mismatch: more than the listed {request.size} bytes arrived",
                                 "the list or the server is wrong", discard=True)
        except _NETWORK_ERRORS as exc:
            sink.close(sync=False)  # raises the write error, if that is what stopped us
            raise _broken(request.url, exc) from exc
        except BaseException:
            sink.close(sync=False)
            raise
        # No fsync: a multi-GB fsync costs more than the transfer on slow disks. Durability comes from
        # verification instead: a cached blob is re-hashed before every reuse (see _from_cache).
        sink.close(sync=False)
        if remaining == 0:
            keep_alive(response)
        if remaining > 0:
            raise AttemptFailed(f"cannot fetch {redact.url(request.url)}: truncated ({partial.length} of "
                                f"{request.size} bytes)", "connection dropped; try again", retry=True)


def _broken(url: str, exc: BaseException) -> AttemptFailed:
    if isinstance(exc, TimeoutError | urllib3.exceptions.ReadTimeoutError | requests.exceptions.Timeout):
        return AttemptFailed(f"cannot fetch {redact.url(url)}: stalled", "server or network too slow", retry=True)
    return AttemptFailed(f"cannot fetch {redact.url(url)}: connection broken ({type(exc).__name__})",
                   "connection dropped; try again", retry=True)


def _range_start(response: requests.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match else None


def _content_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _credentials(request: Wanted) -> dict[str, str]:
    """What the source wants sent, asked per attempt: a registry's bearer token may have expired since the last
    one. A source that cannot say (its registry went away) fails this attempt, not the run."""
    if request.headers is None:
        return {}
    try:
        return dict(request.headers())
    except ImagesyncError as exc:
        raise AttemptFailed(exc.one_line(), exc.hint or "the image's source cannot be reached", retry=True) from exc


def retry_delay(backoff: float, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After, else exponential backoff."""
    if retry_after is not None:
        return retry_after
    return float(min(backoff * 2 ** (attempt - 1), _BACKOFF_CAP))


def drop_locals(exc: BaseException) -> None:
    """Clear the local variables of the finished frames in the tracebacks of ``exc`` and its causes: the error is
    kept until the run ends, and its frames would otherwise keep the read buffer, the Sink and the response of a
    failed download alive that long. The tracebacks still say where each error came from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__
