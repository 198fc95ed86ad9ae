"""Moving an HTTP body into a ``.partial`` file while hashing it, with the network, sha512 and the disk overlapped.

The calling thread reads into one of a few reused buffers while a second thread hashes the previous one and a
third writes the one before, so memory stays bounded by ``_BUFFERS`` chunks.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from imagesync.util import atomic
from imagesync.util.meters import SILENT, Meter

_BUFFERS = 3  # one being read, one hashed, one written: measured as fast as 6 once writeback is nudged
_WRITEBACK = 64 * 1024**2  # bytes written between two nudges to the kernel to start writing them out


class Digests:
    """The running sha512 of some bytes and, when asked for, their sha256 (OCI layers are addressed by it)."""

    def __init__(self, *, sha256: bool = False) -> None:
        self._sha512 = hashlib.sha512()
        self._sha256 = hashlib.sha256() if sha256 else None

    def update(self, data: memoryview | bytes) -> None:
        self._sha512.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)

    def hexdigest(self) -> str:
        """The sha512 (hex)."""
        return self._sha512.hexdigest()

    def sha256(self) -> str:
        """The sha256 (hex), or "" when it was not asked for."""
        return self._sha256.hexdigest() if self._sha256 is not None else ""

    def fresh(self) -> Digests:
        return Digests(sha256=self._sha256 is not None)


class Partial:
    """The ``.partial`` file of one image and the running digests of exactly the bytes it holds; ``meter`` shows
    how much of the image it holds."""

    def __init__(self, path: Path, meter: Meter = SILENT, *, sha256: bool = False) -> None:
        self.path = path
        self.meter = meter
        self.hasher = Digests(sha256=sha256)
        self.length = 0
        self.fetched = 0

    def load(self, expected_size: int, chunk_size: int) -> None:
        """Hash what an earlier attempt left; a partial longer than the image is worthless."""
        self.hasher, self.length = self.hasher.fresh(), 0
        if not self.path.exists():
            return
        if self.path.stat().st_size > expected_size:
            self.reset()
            return
        with self.path.open("rb") as handle:
            while block := handle.read(chunk_size):
                self.hasher.update(block)
                self.length += len(block)
        self.meter.update(self.length)

    def reset(self) -> None:
        """Start again from zero."""
        self.path.unlink(missing_ok=True)
        self.hasher, self.length = self.hasher.fresh(), 0
        self.meter.reset()


class _Stage:
    """One thread fed by a bounded queue; hashlib and file writes release the GIL, so stages overlap.

    ``work`` and ``then`` are handed to the thread only, never kept on the stage: ``work`` is often a bound method
    of the :class:`Sink` that owns this stage, and keeping it would make a reference cycle that holds the Sink's
    buffers until the cyclic garbage collector happens to run (issue 9: memory grew with the image count).
    """

    def __init__(self, name: str, work: Callable[[memoryview], object], then: queue.Queue[Any]) -> None:
        self.queue: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(work, then), name=name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.queue.put(None)
        self._thread.join()

    def _run(self, work: Callable[[memoryview], object], then: queue.Queue[Any]) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:  # after a failure keep passing buffers on so the reader never blocks
                try:
                    work(memoryview(item[0])[: item[1]])
                except OSError as exc:
                    self.error = exc
            then.put(item)


class Sink:
    """A pipeline over a few reused buffers: the reader fills one while the previous is hashed and the one
    before is written, so the network, sha512 and the disk overlap and memory is ``_BUFFERS`` chunks."""

    def __init__(self, partial: Partial, chunk_size: int) -> None:
        self._partial = partial
        self._handle = partial.path.open("ab", buffering=0)
        self._end = self._flushed = partial.length
        self._free: queue.Queue[tuple[bytearray, int]] = queue.Queue()
        for _ in range(_BUFFERS):
            self._free.put((bytearray(chunk_size), 0))
        tag = partial.path.name[:12]
        self._write = _Stage(f"write:{tag}", self._write_all, self._free)
        self._hash = _Stage(f"sha512:{tag}", partial.hasher.update, self._write.queue)

    def buffer(self) -> bytearray:
        """A free buffer to read into (blocks while every buffer is in use). Raises OSError once a write failed."""
        if self._write.error is not None:
            raise self._write.error
        return self._free.get()[0]

    def put(self, buffer: bytearray, n: int) -> None:
        """Hand the first ``n`` bytes of ``buffer`` on to be hashed and written."""
        self._hash.queue.put((buffer, n))
        self._partial.length += n
        self._partial.meter.update(n)

    def close(self, *, sync: bool) -> None:
        """Drain both threads, optionally fsync, close. Raises the OSError of a failed write."""
        self._hash.join()
        self._write.join()
        try:
            if sync and self._write.error is None:
                os.fsync(self._handle.fileno())
        except OSError as exc:
            self._write.error = exc
        finally:
            self._handle.close()
            self._release()
        if self._write.error is not None:
            raise self._write.error

    def _release(self) -> None:
        """Free the buffers now, whoever still holds this Sink (a traceback's frame, say)."""
        while not self._free.empty():
            self._free.get_nowait()

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = self._handle.write(view) or 0
            view = view[written:]
            self._end += written
        if self._end - self._flushed >= _WRITEBACK and hasattr(os, "posix_fadvise"):
            # Start the disk writing now (Linux begins writeback of dirty pages on DONTNEED), so the fsync
            # before the rename waits for the last window only, and a big image does not flood the page cache.
            os.posix_fadvise(self._handle.fileno(), self._flushed, self._end - self._flushed,
                             os.POSIX_FADV_DONTNEED)
            self._flushed = self._end


def body_reader(response: requests.Response) -> Callable[[memoryview], int]:
    """``readinto`` for the body: http.client's own reads straight into our buffer (no copy, no allocation);
    urllib3's ``read`` is the fallback for anything else."""
    fp = getattr(response.raw, "_fp", None)
    if isinstance(fp, http.client.HTTPResponse):
        return fp.readinto

    def read_into(view: memoryview) -> int:
        data = response.raw.read(len(view), decode_content=False)
        view[: len(data)] = data
        return len(data)

    return read_into


def keep_alive(response: requests.Response) -> None:
    """Give the connection back to the pool once :func:`body_reader`'s fast path has read the whole body:
    urllib3 did not see the body end, so closing the response would close a healthy connection and cost the next
    image a new TCP and TLS handshake (a third of a tiny image's download). Does nothing unless http.client
    itself saw the body complete."""
    fp = getattr(response.raw, "_fp", None)
    if isinstance(fp, http.client.HTTPResponse) and fp.isclosed():
        response.raw.release_conn()


def file_sha512(path: Path, chunk_size: int) -> str:
    """The sha512 hex digest of the file at ``path``, read ``chunk_size`` bytes at a time. Raises OSError."""
    return file_digests(path, chunk_size).hexdigest()


def file_digests(path: Path, chunk_size: int, *, sha256: bool = False) -> Digests:
    """The digests of the file at ``path`` (see :class:`Digests`), read ``chunk_size`` bytes at a time. Raises
    OSError."""
    hasher = Digests(sha256=sha256)
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            hasher.update(view[:n])
    return hasher


def file_sha512_memo(path: Path) -> str:
    """sha512 of a converted image, computed once and kept beside it (conversions are cached, so is this)."""
    memo = path.with_name(path.name + ".sha512")
    if memo.is_file() and memo.stat().st_mtime >= path.stat().st_mtime:
        return memo.read_text().strip()
    digest = file_sha512(path, 4 * 1024 * 1024)
    atomic.write_bytes(memo, digest.encode())
    return digest
