"""One imagesync run at a time per state directory.

The lock is an ``flock`` on ``state_dir/lock``: the kernel drops it when the holder exits, however it dies, so a
killed run never leaves a lock an operator has to clean up. The file's content (pid and start time) is only
for operators and for the contention message; the lock itself is the flock, never the file's existence.
"""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from imagesync.errors import LockHeldError

LOCK_NAME = "lock"
_MODE = 0o644


class RunLock:
    """A held run lock; release it with :meth:`release` or by leaving the ``with`` block."""

    def __init__(self, path: Path, fd: int, since: datetime) -> None:
        self.path = path
        self.since = since
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). Emptying the file first tells operators nobody holds it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def acquire(state_dir: Path) -> RunLock:
    """Take the run lock in ``state_dir`` without waiting.

    Raises LockHeldError (exit code 75) naming the holder when another run holds it; OSError when the
    directory or file cannot be created.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    # No O_TRUNC: until we hold the lock the content belongs to the current holder.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise LockHeldError(f"another imagesync run holds {path} ({holder})") from None
    except BaseException:
        os.close(fd)
        raise
    since = datetime.now(UTC)
    try:
        _write_holder(fd, since)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(path, fd, since)


def _write_holder(fd: int, since: datetime) -> None:
    stat = os.fstat(fd)
    if stat.st_mode & 0o777 != _MODE and stat.st_uid == os.getuid():
        os.fchmod(fd, _MODE)  # the umask may have narrowed it; operators must be able to read who holds it
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}\nsince {since.isoformat(timespec='seconds')}\n".encode(), 0)


def _read_holder(fd: int) -> str:
    """``pid N, since T`` from the holder's file; ``unknown`` parts when it has not written them yet."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    pid = fields.get("pid", "unknown").strip()
    since = fields.get("since", "unknown").strip()
    return f"pid {pid}, since {since}"
