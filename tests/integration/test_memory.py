"""Memory stays flat in the number of images (issue 9): nothing of a download outlives it."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from imagesync.stream import BufferPool, Partial, Sink

MiB = 1024
IMAGES = 1000
# Measured with this very run of 1,000 images: 93 MiB after the fix, ~300 MiB before it (every download's three
# 4 MiB buffers waited in a reference cycle for the cyclic collector). The bound leaves room for noise, not for
# buffers that pile up.
PEAK_BOUND_KIB = 150 * MiB
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_thousand_tiny_images_sync_within_a_fixed_peak_rss(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "tests.support.bulk_sync", str(tmp_path), str(IMAGES)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["exit_code"] == 0
    assert report["done"] == IMAGES
    assert len(list((tmp_path / "archive").glob("demo/*.json"))) == IMAGES
    assert report["peak_kib"] <= PEAK_BOUND_KIB, f"peak RSS {report['peak_kib'] // MiB} MiB for {IMAGES} images"


def test_a_closed_sink_is_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    partial = Partial(tmp_path / "x.partial")
    sink = Sink(partial, 4096)
    buffer = sink.buffer()
    buffer[:3] = b"abc"
    sink.put(buffer, 3)
    sink.close(sync=False)
    gone = weakref.ref(sink)
    gc.disable()
    try:
        del sink, buffer
        assert gone() is None, "a reference cycle keeps the Sink and its buffers alive"
    finally:
        gc.enable()
    assert (tmp_path / "x.partial").read_bytes() == b"abc"


def test_sinks_of_one_pool_reuse_the_same_buffers(tmp_path: Path) -> None:
    pool = BufferPool(4096)
    kept: list[bytearray] = []  # held, so that no id() is reused by a new buffer
    for i in range(50):
        sink = Sink(Partial(tmp_path / f"{i}.partial"), 4096, pool)
        buffer = sink.buffer()
        buffer[:1] = b"x"
        kept.append(buffer)
        sink.put(buffer, 1)
        sink.close(sync=False)
    # Three buffers per download, handed on: fifty downloads never allocate more than the first one did.
    assert len({id(b) for b in kept}) <= 3
