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

from imagesync.images.stream import Partial, Sink

MiB = 1024
IMAGES = 1000
# Measured with this very run of 1,000 images: ~300 MiB before the fixes (every download's three 4 MiB buffers
# waited in a reference cycle for the cyclic collector), then 93 MiB, and ~90 MiB since buffers are sized to the
# image (2,000 images: 95 MiB). The bound is the target for 2,000 images: room for noise, not for buffers
# that pile up.
PEAK_BOUND_KIB = 120 * MiB
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
