"""Trust under pressure, through the real CLI (a subprocess) against a real signed list served over HTTPS:
image URLs on internal addresses, and list fields that try to forge log or report lines."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from imagesync.demo.world import DemoWorld, build, demo_images


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with build(tmp_path) as w:
        yield w


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "imagesync", "--config", str(config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def directory_config(world: DemoWorld, **download: object) -> Path:
    path = world.write_config({"targets": {"archive": {"driver": "directory", "path": str(world.root / "archive")}}})
    data = yaml.safe_load(path.read_text())
    data["download"].update(download)
    path.write_text(yaml.safe_dump(data))
    return path


def test_sync_refuses_images_on_loopback_unless_allowed(world: DemoWorld) -> None:
    images = demo_images()
    world.publish(images)
    refused = run("sync", config=directory_config(world, allowed_networks=[]))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    url = world.server.url(f"/images/{images[0].identifier}-{images[0].version}.img")
    assert (f"demo/{images[0].identifier}: refused to download {url}: 127.0.0.1 is a loopback address "
            "(add the network to download.allowed_networks if this is intended)") in refused.stderr
    assert world.server.hits(f"/images/{images[0].identifier}-{images[0].version}.img") == 0
    assert not list((world.root / "archive").rglob("*.img"))
    allowed = run("sync", config=directory_config(world))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
