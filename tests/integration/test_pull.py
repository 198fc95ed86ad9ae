"""Images Glance pulls itself are not downloaded by the sync host (issue 11, imagesync.run.pull), on the devcloud.

A whole run: the signed list comes from the demo world's HTTPS server, the image bytes from a plain-HTTP
ListServer on 127.0.0.1 (the devcloud's Glance may web-download from there, and downloads with the system CA
bundle, which the test CA is not in: see tests/integration/test_glance_import.py).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping

import pytest

from imagesync.config import settings as config
from imagesync.demo.server import Fault, ListServer
from imagesync.demo.world import DemoImage, DemoWorld, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import SyncResult, summary, sync
from imagesync.targets.glance.inventory import PENDING
from tests.devcloud.fixture import DevCloud


class Swapping(ListServer):
    """Plain HTTP; a path put with :meth:`swap` serves wrong bytes to everyone but imagesync's downloader (told by
    its User-Agent), the way a mirror caught mid-update could answer Glance."""

    def __init__(self) -> None:
        super().__init__(tls=False)
        self.swapped: dict[str, tuple[bytes, bytes]] = {}
        self.agents: list[str] = []  # who asked for a swapped path, in order: "imagesync" or "other"

    def swap(self, path: str, *, wrong: bytes, right: bytes) -> None:
        self.swapped[path] = (wrong, right)
        self.put(path, wrong)

    def record(self, method: str, target: str, headers: Mapping[str, str]) -> Fault | None:
        fault = super().record(method, target, headers)
        if target in self.swapped:
            wrong, right = self.swapped[target]
            agent = {key.lower(): value for key, value in headers.items()}.get("user-agent", "")
            ours = agent.startswith("imagesync/")
            self.agents.append("imagesync" if ours else "other")
            self.put(target, right if ours else wrong)
        return fault


@pytest.fixture
def images() -> Iterator[Swapping]:
    with Swapping() as running:
        yield running


@pytest.fixture
def tag(devcloud: DevCloud) -> Iterator[str]:
    """A tag of this test alone; whatever still carries it (or a suffixed one) at the end is deleted."""
    unique = f"imagesync-{uuid.uuid4().hex[:8]}"
    yield unique
    glance = devcloud.glance()
    for image in list(glance.images.list()):
        if any(t.startswith(unique) for t in image.get("tags", ())):
            glance.images.delete(image["id"])


def publish(world: DemoWorld, images: Swapping, image: DemoImage) -> None:
    """A signed list (from the world's HTTPS server) naming ``image`` at ``images``' plain-HTTP URL."""
    images.put(image.path, image.data)
    world.publish([], fields={"hv:images": [image.entry(images.url("").rstrip("/"))]})


def glance(devcloud: DevCloud, tag: str, **extra: object) -> dict[str, object]:
    return {"driver": "glance", "visibility": "private", "tag": tag, "region": devcloud.region,
            "auth": devcloud.password_auth(), **extra}


def synced(world: DemoWorld, targets: dict[str, dict[str, object]]) -> SyncResult:
    result = sync(config.load(world.write_config({"targets": targets})), dry_run=False)
    assert result.exit_code == EXIT_OK, [(r.action.target, r.error) for r in result.results]
    return result


def verified(devcloud: DevCloud, tag: str, image: DemoImage) -> None:
    (held,) = devcloud.glance().images.list(filters={"tag": [tag]})
    assert held["status"] == "active" and held["visibility"] == "private"
    assert (held["os_hash_value"], held["size"]) == (hashlib.sha512(image.data).hexdigest(), len(image.data))
    assert PENDING not in held and held["min_disk"] >= 1


def moved(result: SyncResult) -> dict[str, tuple[int, int]]:
    """Target -> (bytes uploaded, bytes the target pulled itself)."""
    return {r.action.target: (r.bytes_uploaded, r.bytes_pulled) for r in result.results}


def test_a_web_download_target_syncs_without_the_bytes_crossing_the_host(
        devcloud: DevCloud, world: DemoWorld, images: Swapping, tag: str) -> None:
    (alpine, _) = demo_images()
    publish(world, images, alpine)
    result = synced(world, {"site": glance(devcloud, tag, upload="web-download")})
    assert result.bytes_downloaded == 0 and images.hits(alpine.path) == 1  # Glance's fetch, not ours
    assert moved(result) == {"site": (0, len(alpine.data))}
    assert summary(result)["bytes_pulled"] == len(alpine.data)
    verified(devcloud, tag, alpine)


def test_a_pulling_and_a_directory_target_share_one_download(devcloud: DevCloud, world: DemoWorld,
                                                             images: Swapping, tag: str) -> None:
    (alpine, _) = demo_images()
    publish(world, images, alpine)
    result = synced(world, {"site": glance(devcloud, tag, upload="web-download"),
                            "disk": {"driver": "directory", "path": str(world.root / "disk")}})
    assert result.bytes_downloaded == len(alpine.data)
    assert images.hits(alpine.path) == 2  # Glance once, the directory's download once
    assert moved(result) == {"site": (0, len(alpine.data)), "disk": (len(alpine.data), 0)}
    verified(devcloud, tag, alpine)
    assert len(list((world.root / "disk").glob("demo/*.json"))) == 1


def test_failed_imports_fall_back_to_direct_with_one_download(devcloud: DevCloud, world: DemoWorld,
                                                              images: Swapping, tag: str) -> None:
    # Glance gets wrong bytes of the right size (only the hash tells), imagesync the right ones: the import is
    # refused, and both targets upload directly what was downloaded once, after the imports. Downloaded before
    # (as without imagesync.run.pull) the image would be verified first and never imported wrong.
    (alpine, _) = demo_images()
    publish(world, images, alpine)
    images.swap(alpine.path, wrong=bytes(len(alpine.data)), right=alpine.data)
    result = synced(world, {"one": glance(devcloud, tag, upload="web-download"),
                            "two": glance(devcloud, f"{tag}-two", upload="web-download")})
    assert result.bytes_downloaded == len(alpine.data)
    # Two imports, then one download: the bytes were fetched only when the first import had failed.
    assert images.agents[0] == "other" and sorted(images.agents) == ["imagesync", "other", "other"]
    assert moved(result) == {"one": (len(alpine.data), 0), "two": (len(alpine.data), 0)}
    verified(devcloud, tag, alpine)
    verified(devcloud, f"{tag}-two", alpine)
