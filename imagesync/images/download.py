"""Image URL -> verified file in the content-addressed cache (DESIGN §7).

Bytes are streamed in large chunks: the calling thread reads the network while a second thread hashes (sha512)
and appends to ``partial/<sha512>.partial``, so hashing overlaps the transfer and memory stays bounded by a few
chunks. A partial left by an earlier attempt or run is resumed with ``Range``. Only a file whose size and sha512
matched is renamed into ``images/<sha512[:2]>/<sha512>``: nothing corrupt is ever served from the cache.
The buffers, threads and the partial file itself are in :mod:`imagesync.images.stream`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from imagesync.errors import ImagesyncError
from imagesync.images import space
from imagesync.images.stream import Digests, Partial, file_digests
from imagesync.images.transfer import Fatal, Transfer, drop_locals, retry_delay
from imagesync.net.failures import AttemptFailed
from imagesync.net.guard import AddressGuard, Network, Resolver, system_resolver
from imagesync.net.policy import FetchPolicy
from imagesync.net.tls import trusting_session
from imagesync.util import redact
from imagesync.util.atomic import fsync_dir
from imagesync.util.logfields import fields
from imagesync.util.meters import NO_PROGRESS, Progress

log = logging.getLogger(__name__)
T = TypeVar("T")

GiB = 1024**3
MiB = 1024**2
_SHA512 = re.compile(r"^[0-9a-f]{128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(ImagesyncError):
    """An image could not be downloaded or did not match its listed size or sha512."""


class DiskFullError(DownloadError):
    """Not enough free space in the cache for an image (checked before starting, or ENOSPC while writing)."""


@dataclass(frozen=True)
class DownloadRequest:
    """One image to download, checked against its sha512 and, when given, its sha256 (an OCI layer's address,
    the only digest such a source publishes: ``sha512`` is then empty). ``name`` ("list/identifier") is for
    messages; ``headers`` gives, per attempt, what to send besides (a registry's current bearer token)."""

    sha512: str
    size: int
    url: str
    name: str
    sha256: str = ""
    headers: Callable[[], Mapping[str, str]] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """What the image is cached under: its sha512 when known, else its sha256."""
        return self.sha512 or self.sha256


@dataclass(frozen=True)
class DownloadPolicy:
    """How patient, parallel and careful downloads are."""

    concurrency: int = 2
    retries: int = 5  # extra attempts after the first
    timeout: float = 60.0  # read timeout: seconds without progress
    connect_timeout: float = 10.0
    backoff: float = 1.0  # base seconds of the exponential backoff
    min_free_space: int = 10 * GiB
    max_image_size: int = 200 * GiB
    chunk_size: int = 4 * MiB
    # Besides public unicast addresses, where images may come from (DESIGN §9); see imagesync.net.guard.
    allowed_networks: tuple[Network, ...] = ()


@dataclass(frozen=True)
class Downloaded:
    """A verified image in the cache; ``fetched_bytes`` is what this run transferred (0 when cached)."""

    path: Path
    sha512: str
    size: int
    fetched_bytes: int


class Downloader:
    """Downloads images into ``cache_dir`` with one HTTP session; thread-safe."""

    def __init__(self, cache_dir: Path, policy: DownloadPolicy, *, ca_dir: Path | None = None,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 resolve: Resolver = system_resolver, progress: Progress = NO_PROGRESS) -> None:
        """Prepare the cache and the session; ``resolve`` answers name lookups of image hosts (a test seam); each
        download is shown by ``progress``. Raises FetchError if ``ca_dir`` cannot be read."""
        self._images = Path(cache_dir) / "images"
        self._partials = Path(cache_dir) / "partial"
        self._root = Path(cache_dir)
        self._policy = policy
        self._fetch_policy = FetchPolicy(connect_timeout=policy.connect_timeout, timeout=policy.timeout,
                                         retries=policy.retries, backoff=policy.backoff, ca_dir=ca_dir)
        self._session = trusting_session(ca_dir, session, guard=AddressGuard(policy.allowed_networks, resolve))
        self._sleep = sleep
        self._progress = progress
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._bytes_fetched = 0
        self._space = space.Admission(self._root, self._partials, min_free=policy.min_free_space)
        self._transfer = Transfer(self._session, policy.chunk_size, (policy.connect_timeout, policy.timeout),
                                  self._fetch_policy, self._count)

    @property
    def bytes_fetched(self) -> int:
        """Bytes transferred by this downloader so far, over all images and threads."""
        with self._lock:
            return self._bytes_fetched

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def cached(self, sha512: str) -> Path | None:
        """The cached file for ``sha512`` if present (its size is checked by :meth:`fetch`), else None."""
        path = self._blob(sha512)
        return path if path.is_file() else None

    def blobs(self) -> list[Path]:
        """Every file in the image cache (for gc)."""
        return sorted(p for p in self._images.glob("*/*") if p.is_file())

    def partials(self) -> list[Path]:
        """Every partial download (for gc)."""
        return sorted(p for p in self._partials.glob("*.partial") if p.is_file())

    def fetch_all(self, requests: Sequence[DownloadRequest]) -> dict[str, Downloaded | DownloadError]:
        """Download each distinct sha512 once (see :meth:`running`) and wait for all; never raises DownloadError:
        each failure is returned as the value for its sha512 while the others go on."""
        with self.running(requests, lambda _request, outcome: outcome) as futures:
            return {sha512: future.result() for sha512, future in futures.items()}

    @contextmanager
    def running(self, requests: Sequence[DownloadRequest],
                then: Callable[[DownloadRequest, Downloaded | DownloadError], T]) -> Iterator[dict[str, Future[T]]]:
        """Start downloading each distinct sha512 once, ``policy.concurrency`` at a time as the free space allows
        (see :mod:`imagesync.images.space`), the most advanced partial first; yield one future per sha512 (in the order
        of ``requests``). Each download thread calls ``then(request, outcome)`` as soon as its image is verified
        or has failed (a DownloadError is passed, never raised), and the future holds what ``then`` returned.
        Leaving the block waits for every download and every ``then``."""
        unique = {request.key: request for request in requests}
        wants = [space.Want(r.key, r.size, r.name) for r in unique.values()]
        with self._space.batch(wants) as ordered, ThreadPoolExecutor(
                max_workers=max(1, self._policy.concurrency), thread_name_prefix="download") as pool:
            started = {w.key: pool.submit(self._fetch_then, unique[w.key], then) for w in ordered}
            yield {key: started[key] for key in unique}

    def _fetch_then(self, request: DownloadRequest, then: Callable[[DownloadRequest, Downloaded | DownloadError], T],
                    ) -> T:
        return then(request, self._fetch_isolated(request))

    def _fetch_isolated(self, request: DownloadRequest) -> Downloaded | DownloadError:
        try:
            return self.fetch(request)
        except DownloadError as exc:
            # Not an ERROR of its own: every action that needed this image fails with this very message, and
            # is logged at ERROR once per target (a failure must reach the operator once, not twice).
            log.debug("download failed", extra=fields(image=request.name, result="failed", error=exc.one_line()))
            drop_locals(exc)
            return exc

    def fetch(self, request: DownloadRequest) -> Downloaded:
        """Return the verified image, from the cache or downloaded. Raises DownloadError (DiskFullError when
        space runs out) naming the image, with a hint."""
        _validate(request)
        with self._key_lock(request.key):
            try:
                hit = self._from_cache(request)
                return hit if hit is not None else self._download(request)
            except OSError as exc:
                raise _disk_error(request, exc) from exc

    def _key_lock(self, sha512: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(sha512, threading.Lock())

    def _blob(self, sha512: str) -> Path:
        return self._images / sha512[:2] / sha512

    def _from_cache(self, request: DownloadRequest) -> Downloaded | None:
        path = self.cached(request.key)
        if path is None:
            return None
        size = path.stat().st_size
        if size != request.size:
            log.warning("image=%s cached file has %d bytes, expected %d: deleting it", request.name, size,
                        request.size)
            path.unlink()
            return None
        # Blobs are renamed into place unsynced, so a crash of the machine may leave one torn: check it.
        digests = file_digests(path, self._policy.chunk_size, sha256=bool(request.sha256))
        if _mismatch(request, digests) is not None:
            log.warning("image=%s cached file %s is corrupt (sha512 %s...): deleting it", request.name, path,
                        digests.hexdigest()[:16])
            path.unlink()
            return None
        log.debug("image=%s cached at %s (digest verified)", request.name, path)
        return Downloaded(path, digests.hexdigest(), size, 0)

    def _download(self, request: DownloadRequest) -> Downloaded:
        started = time.monotonic()
        if request.size > self._policy.max_image_size:
            raise DownloadError(f"size {request.size} bytes exceeds max_image_size {self._policy.max_image_size}",
                                subject=request.name, hint="raise download.max_image_size if this image is wanted")
        self._partials.mkdir(parents=True, exist_ok=True)
        with self._admitted(request), self._progress.meter(f"download {request.name}", request.size) as meter:
            partial = Partial(self._partials / f"{request.key}.partial", meter, sha256=bool(request.sha256))
            partial.load(request.size, self._policy.chunk_size)
            self._attempts(request, partial)
            path = self._promote(request, partial)
        log.info("image downloaded", extra=fields(image=request.name, result="downloaded", bytes=partial.fetched,
                                                  seconds=round(time.monotonic() - started, 3)))
        return Downloaded(path, partial.hasher.hexdigest(), request.size, partial.fetched)

    def _admitted(self, request: DownloadRequest) -> space.Slot:
        """Wait for room for the rest of the image (may drop partials of less advanced images of this batch).
        Raises DiskFullError when there is none even with nothing else downloading."""
        try:
            return self._space.admit(space.Want(request.key, request.size, request.name))
        except space.Shortage as short:
            raise DiskFullError(short.message, subject=request.name, hint=short.hint) from short

    def _attempts(self, request: DownloadRequest, partial: Partial) -> None:
        attempts = self._policy.retries + 1
        for attempt in range(1, attempts + 1):
            log.debug("image=%s url=%s attempt=%d offset=%d", request.name, redact.url(request.url), attempt,
                      partial.length)
            try:
                self._transfer.attempt(request, partial)
                return
            except Fatal as fatal:
                if fatal.discard:
                    partial.reset()
                raise DownloadError(redact.text(fatal.message), subject=request.name, hint=fatal.hint) from fatal
            except AttemptFailed as failed:
                if not failed.retry or attempt == attempts:
                    suffix = f"; gave up after {attempt} attempt{'s' if attempt > 1 else ''}" if failed.retry else ""
                    raise DownloadError(redact.text(failed.message + suffix), subject=request.name,
                                        hint=failed.hint) from failed
                delay = retry_delay(self._policy.backoff, attempt, failed.retry_after)
                log.debug("image=%s attempt=%d failed: %s; retry in %.1fs", request.name, attempt,
                          redact.text(failed.message), delay)
                self._sleep(delay)

    def _count(self, partial: Partial, n: int) -> None:
        partial.fetched += n
        with self._lock:
            self._bytes_fetched += n

    def _promote(self, request: DownloadRequest, partial: Partial) -> Path:
        wrong = _mismatch(request, partial.hasher)
        if partial.length != request.size or wrong is not None:
            what = (wrong if partial.length == request.size and wrong is not None else
                    f"size mismatch: expected {request.size} bytes, got {partial.length}")
            partial.reset()
            raise DownloadError(what, subject=request.name, hint="the image changed on the server or was "
                                "corrupted in transit; tell the list's endorser if it persists")
        final = self._blob(request.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial.path, final)
        fsync_dir(final.parent)
        return final



def _mismatch(request: DownloadRequest, digests: Digests) -> str | None:
    """What is wrong with bytes of these digests, or None when they are the image's."""
    for name, expected, got in (("", request.sha512, digests.hexdigest()),
                                ("sha256 ", request.sha256, digests.sha256())):
        if expected and got != expected:
            return f"checksum mismatch: expected {name}{expected[:16]}..., got {got[:16]}..."
    return None


def _validate(request: DownloadRequest) -> None:
    if not request.sha512 and not request.sha256:
        raise DownloadError("no digest to check the bytes against", subject=request.name,
                            hint="the source must name a sha512 or a sha256")
    if request.sha512 and not _SHA512.match(request.sha512):
        raise DownloadError("sha512 must be 128 lowercase hex digits", subject=request.name,
                            hint="check the list's sl:checksum:sha512")
    if request.sha256 and not _SHA256.match(request.sha256):
        raise DownloadError("sha256 must be 64 lowercase hex digits", subject=request.name,
                            hint="check the source's layer digest")
    if request.size < 0:
        raise DownloadError(f"invalid size {request.size}", subject=request.name, hint="check the list's hv:size")


def _disk_error(request: DownloadRequest, exc: OSError) -> DownloadError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError("disk full while writing the download (partial kept; the next run resumes)",
                             subject=request.name, hint="free space in cache_dir or run `imagesync gc`")
    return DownloadError(f"cannot write the cache: {exc.strerror or exc}", subject=request.name,
                         hint="check cache_dir and its permissions")
