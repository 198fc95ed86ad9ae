"""What the progress meters are told during real syncs (pipeline.sync with a recording Progress): every byte of
each download and each upload, a resumed download starting at what the partial file holds, a restarted one going
back to zero; into a directory and into the dev cloud's Glance."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagesync.config import settings as config
from imagesync.demo.server import Fault
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.run.pipeline import sync
from imagesync.util.meters import Meter
from tests.devcloud.fixture import DevCloud

Entry = int | str  # bytes counted, or "reset"


class Recording:
    """A Progress that keeps, per label, the total it was opened with and every update and reset."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.calls: dict[str, list[Entry]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def meter(self, label: str, total: int) -> Iterator[Meter]:
        with self._lock:
            self.totals[label] = total
            calls = self.calls.setdefault(label, [])
        yield _Meter(calls)

    def counted(self, label: str) -> int:
        """Bytes counted since the last reset."""
        calls = self.calls[label]
        after = calls[len(calls) - calls[::-1].index("reset"):] if "reset" in calls else calls
        return sum(c for c in after if isinstance(c, int))


class _Meter:
    def __init__(self, calls: list[Entry]) -> None:
        self.calls = calls

    def update(self, n: int) -> None:
        self.calls.append(n)

    def reset(self) -> None:
        self.calls.append("reset")


def directory_settings(world: DemoWorld) -> config.Settings:
    return config.load(world.write_config({"targets": {"archive": {"driver": "directory",
                                                                   "path": str(world.root / "archive")}}}))


def test_every_byte_of_each_download_and_upload(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    progress = Recording()
    assert sync(directory_settings(world), dry_run=False, progress=progress).exit_code == 0
    size = len(images[0].data)
    assert progress.totals == {f"{kind} demo/{name}": size for name in ("demo-alpine", "demo-debian")
                               for kind in ("download", "upload archive:")}
    assert all(progress.counted(label) == size for label in progress.totals)
    # A second run finds every image in the cache and the targets: nothing moves, no meter opens.
    again = Recording()
    assert sync(directory_settings(world), dry_run=False, progress=again).exit_code == 0
    assert again.totals == {}


def partial_of(world: DemoWorld, data: bytes) -> Path:
    path = world.root / "cache" / "partial" / f"{hashlib.sha512(data).hexdigest()}.partial"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_resumed_download_starts_at_what_the_partial_holds(world: DemoWorld) -> None:
    alpine = demo_images()[0]
    world.publish([alpine])
    partial_of(world, alpine.data)
    progress = Recording()
    assert sync(directory_settings(world), dry_run=False, progress=progress).exit_code == 0
    calls = progress.calls["download demo/demo-alpine"]
    assert calls[0] == len(alpine.data) // 2 and "reset" not in calls
    assert progress.counted("download demo/demo-alpine") == len(alpine.data)


def test_a_download_that_starts_over_goes_back_to_zero(world: DemoWorld) -> None:
    alpine = demo_images()[0]
    world.publish([alpine])
    partial_of(world, alpine.data)
    world.server.inject(alpine.path, Fault.status(416))  # the resume range refused: start again from zero
    progress = Recording()
    assert sync(directory_settings(world), dry_run=False, progress=progress).exit_code == 0
    calls = progress.calls["download demo/demo-alpine"]
    assert calls[:2] == [len(alpine.data) // 2, "reset"]
    assert sum(c for c in calls[2:] if isinstance(c, int)) == len(alpine.data)


def test_an_upload_into_glance_is_counted_read_by_read(vo_access: DevCloud, world: DemoWorld) -> None:
    cloud = vo_access
    secret = world.root / "password"
    secret.write_text(cloud.user.password)
    tag = f"imagesync-{uuid.uuid4().hex[:8]}"
    images = demo_images()
    world.publish(images)
    target = {"driver": "glance", "region": cloud.region, "visibility": "private", "tag": tag,
              "auth": cloud.password_auth(password_file=secret)}
    progress = Recording()
    try:
        result = sync(config.load(world.write_config({"targets": {"cloud": target}})), dry_run=False,
                      progress=progress)
        assert result.exit_code == 0, [r.error for r in result.results]
    finally:
        glance = cloud.glance()
        for image in glance.images.list(filters={"tag": [tag]}):
            glance.images.delete(image["id"])
    size = len(images[0].data)
    label = "upload cloud: demo/demo-alpine"
    assert progress.totals[label] == size and progress.counted(label) == size
    # glanceclient is handed 64 KiB per read, and every read is counted.
    assert [c for c in progress.calls[label] if isinstance(c, int) and c] == [64 * 1024] * (size // (64 * 1024))
