"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def replacing(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a file that replaces ``path`` atomically when the block ends without error. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as handle:
        handle.write(data)


def copy_file(source: Path, destination: Path, on_read: Callable[[int], object] | None = None) -> None:
    """Copy ``source`` atomically over ``destination``, telling ``on_read`` the size of each block. Raises OSError."""
    with replacing(destination) as handle, source.open("rb") as src:
        if on_read is None:
            shutil.copyfileobj(src, handle, _COPY_BLOCK)
            return
        while block := src.read(_COPY_BLOCK):
            handle.write(block)
            on_read(len(block))


_COPY_BLOCK = 8 * 1024 * 1024


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
