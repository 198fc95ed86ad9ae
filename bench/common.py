"""Helpers shared by the benchmarks: sizes on the command line, big test images written fast, work directories."""

from __future__ import annotations

import compileall
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imagesync

MiB = 1024 * 1024


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``64k`` (binary units) or bytes."""
    units = {"k": 1024, "m": MiB, "g": 1024 * MiB}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_image(path: Path, size: int, *, block_size: int = 64 * MiB) -> str:
    """Write ``size`` bytes (one urandom block, stamped per copy) and return their sha512."""
    block = bytearray(os.urandom(min(block_size, size)))
    digest = hashlib.sha512()
    with path.open("wb") as handle:
        written, index = 0, 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")  # no two blocks alike, so no layer can dedupe them
            piece = memoryview(block)[: min(len(block), size - written)]
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
            index += 1
    return digest.hexdigest()


@contextmanager
def work_dir(parent: Path | None, keep: bool) -> Iterator[Path]:
    """A fresh temporary directory under ``parent`` (default: the system's), removed at the end unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="imagesync-bench-", dir=parent))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def compile_like_installed() -> None:
    """Write imagesync's bytecode, as ``pip install`` does: a checkout run with PYTHONDONTWRITEBYTECODE (set on the
    benchmark machine) would otherwise compile every module in every timed run, which no installed copy does."""
    compileall.compile_dir(Path(imagesync.__file__).parent, quiet=1)
    print("imagesync's bytecode compiled, as an installed copy has it")
