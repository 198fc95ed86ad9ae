"""Admitting downloads against the free space of the cache, so that parallel downloads never strand each other.

Two images that each fit alone but not together used to start side by side, both stop half-way at ENOSPC, and
then be refused by every later run: each one's remaining bytes exceeded what the other's partial left free, and
gc rightly keeps partials of wanted images. So a download starts only when its remaining bytes fit in the free
space minus what the running downloads will still write minus ``min_free_space``; otherwise it waits for them
(downloads serialise when space is short). A batch is started most advanced partial first.

When nothing is running and an image still does not fit, partials of less advanced images of the same batch are
dropped, the least advanced first, if that makes room: a partial is only a cache of bytes the server still has,
its image stays wanted and is fetched again once there is room, and the most advanced partial always wins, so
runs converge instead of trading places. Partials of images outside the batch (other lists, or no longer
listed) are never touched here: the error names them, for ``imagesync gc`` or the operator.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

_RECHECK = 5.0  # seconds between looks at the disk while waiting: space may be freed outside imagesync
_MiB = 1024**2
_GiB = 1024**3


@dataclass(frozen=True)
class Want:
    """One image to download: ``key`` is its sha512 (the partial is ``<key>.partial``), ``name`` for messages."""

    key: str
    size: int
    name: str


class Shortage(Exception):
    """There is no room for an image, even with nothing else running; ``hint`` says what holds the space."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Slot:
    """The admission of one download; leaving the ``with`` block gives its reservation back."""

    def __init__(self, admission: Admission, want: Want) -> None:
        self._admission = admission
        self._want = want

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._admission.release(self._want)


class Admission:
    """The free space of one cache, shared by the download threads of one Downloader."""

    def __init__(self, root: Path, partials: Path, *, min_free: int) -> None:
        self._root = root
        self._partials = partials
        self._min_free = min_free
        self._cond = threading.Condition()
        self._running: dict[str, Want] = {}
        self._batch: dict[str, Want] = {}

    @contextmanager
    def batch(self, wants: Sequence[Want]) -> Iterator[list[Want]]:
        """Register the images of one run (their partials may make room for each other) and yield them most
        advanced first: the most advanced partial needs the fewest new bytes and loses the most if dropped."""
        with self._cond:
            self._batch.update((w.key, w) for w in wants)
        try:
            yield sorted(wants, key=lambda w: -self._held(w))
        finally:
            with self._cond:
                for want in wants:
                    self._batch.pop(want.key, None)

    def admit(self, want: Want) -> Slot:
        """Wait until ``want``'s remaining bytes fit beside the running downloads, then reserve them.

        Call before reading the partial: this may drop the partials of less advanced images of the batch.
        Raises Shortage when nothing is running and there is still no room; OSError when the cache cannot be
        examined.
        """
        with self._cond:
            waiting = False
            while (short := self._shortfall(want)) > 0:
                if self._running:
                    if not waiting:
                        log.info("image=%s waits for %d running download(s): %s short in %s", want.name,
                                 len(self._running), _human(short), self._root)
                        waiting = True
                    self._cond.wait(_RECHECK)
                elif not self._make_room(want, short):
                    raise self._shortage(want, short)
            self._running[want.key] = want
        return Slot(self, want)

    def release(self, want: Want) -> None:
        """Give back ``want``'s reservation (it finished or failed) and wake the waiting downloads."""
        with self._cond:
            self._running.pop(want.key, None)
            self._cond.notify_all()

    def _shortfall(self, want: Want) -> int:
        # The running downloads' remaining bytes are counted before the free space is read, so bytes they
        # write in between are counted twice rather than not at all.
        reserved = sum(self._remaining(w) for w in self._running.values())
        free = shutil.disk_usage(self._root).free
        return self._remaining(want) + reserved + self._min_free - free

    def _remaining(self, want: Want) -> int:
        """New space ``want`` still takes: whole blocks, as the file system allocates them, plus one to spare."""
        block = os.statvfs(self._root).f_frsize or 4096
        return (-(-want.size // block) - self._held(want) // block + 1) * block

    def _held(self, want: Want) -> int:
        size = _size(self._partial(want.key))
        return size if size <= want.size else 0  # a partial longer than its image is discarded on load

    def _partial(self, key: str) -> Path:
        return self._partials / f"{key}.partial"

    def _make_room(self, want: Want, short: int) -> bool:
        """Drop the partials of less advanced, idle images of the batch, least advanced first, if that makes
        room for ``want``; drop nothing if it cannot."""
        rank = (self._held(want), want.key)
        idle = sorted((w for w in self._batch.values() if w.key not in self._running and w.key != want.key
                       and self._held(w) and (self._held(w), w.key) < rank), key=lambda w: (self._held(w), w.key))
        chosen: list[Want] = []
        for other in idle:
            if short <= 0:
                break
            chosen.append(other)
            short -= _size(self._partial(other.key))
        if short > 0:
            return False
        for other in chosen:
            log.warning("image=%s partial dropped (%d bytes) so that image=%s can complete: the cache cannot "
                        "hold both; it is downloaded again once there is room", other.name,
                        _size(self._partial(other.key)), want.name)
            self._partial(other.key).unlink(missing_ok=True)
        return True

    def _shortage(self, want: Want, short: int) -> Shortage:
        free = shutil.disk_usage(self._root).free
        others = sorted((p for p in self._partials.glob("*.partial") if p.name != self._partial(want.key).name),
                        key=_size, reverse=True)
        blobs = [p for p in (self._root / "images").glob("*/*") if p.is_file()]
        held = [f"{self._label(p)} ({_human(_size(p))})" for p in others[:3]]
        if len(others) > 3:
            held.append(f"{len(others) - 3} more")
        cached = f"{len(blobs)} cached image(s) ({_human(sum(_size(p) for p in blobs))})"
        message = (f"not enough free space in {self._root}: need {_human(free + short - self._min_free)} plus "
                   f"min_free_space {_human(self._min_free)}, have {_human(free)}; held by {cached}"
                   + (f" and partial downloads of other images: {', '.join(held)}" if held else ""))
        return Shortage(message, "run `imagesync gc` to drop what no pending work needs (images already "
                                 "uploaded, partials of images no longer wanted), or give cache_dir more space")

    def _label(self, path: Path) -> str:
        """``partial/<sha512 prefix>...`` plus the image name when it is part of this batch."""
        key = path.name.split(".", 1)[0]
        want = self._batch.get(key)
        return f"partial/{key[:16]}..." + (f" of {want.name}" if want else "")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _human(n: int) -> str:
    return f"{n / _GiB:.1f} GiB" if abs(n) >= _GiB else f"{n / _MiB:.1f} MiB"
