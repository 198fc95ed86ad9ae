"""SIGKILL ``imagesync sync`` at 30+ points against a directory target, start it again, assert convergence.

The aimed points strike just before or after every kind of step: downloads (mid-stream and before the promotion
into the cache), conversions (during qemu-img and after), the target's add, retire and metadata update, and the
state writes; the seeded random points strike at a random moment or after a random state write. See README.md
for the long run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.demo.world import build
from tests.crash.scenario import RANDOM_POINTS, SEED, Point, Scenario, random_points

DIRECTORY = "imagesync.targets.directory:DirectoryDriver"
AIMED = [
    Point(1, "imagesync.images.stream:Sink.put@after#1"),
    Point(1, "imagesync.images.download:Downloader._promote@before#2"),
    Point(1, "imagesync.images.download:Downloader._promote@after#1"),
    Point(1, "imagesync.images.convert:_convert@during:2"),
    Point(1, "imagesync.images.convert:_convert@after#1"),
    Point(1, "imagesync.images.convert:prepare@after#3"),
    Point(1, f"{DIRECTORY}.add@before#1"),
    Point(1, "imagesync.util.atomic:copy_file@after#2"),
    Point(1, f"{DIRECTORY}.add@after#1"),
    Point(1, f"{DIRECTORY}.add@after#3"),
    Point(1, "imagesync.state.store:StateStore.upsert_image@after#2"),
    Point(1, "imagesync.state.store:StateStore.record_list_ok@after#1"),
    Point(1, "imagesync.state.store:StateStore.transition@after#4"),
    Point(2, "imagesync.images.stream:Sink.put@after#2"),
    Point(2, "imagesync.images.download:Downloader._promote@after#1"),
    Point(2, "imagesync.images.convert:_convert@after#1"),
    Point(2, f"{DIRECTORY}.add@before#1"),
    Point(2, f"{DIRECTORY}.add@after#1"),
    Point(2, f"{DIRECTORY}.add@after#2"),
    Point(2, f"{DIRECTORY}.update_metadata@before#1"),
    Point(2, f"{DIRECTORY}.update_metadata@after#1"),
    Point(2, f"{DIRECTORY}.retire@before#1"),
    Point(2, f"{DIRECTORY}.retire@after#1"),
    Point(2, f"{DIRECTORY}.retire@after#2"),
    Point(2, "imagesync.run.reconcile:reconcile@after#1"),
    Point(2, "imagesync.state.store:StateStore.transition@after#1"),
    Point(2, "imagesync.state.store:StateStore.transition@after#6"),
    Point(2, "imagesync.state.store:StateStore.record_list_ok@before#1"),
]
POINTS = AIMED + random_points(8 + RANDOM_POINTS, seed=SEED, moment_ms=600, writes=16)


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    with build(tmp_path) as world:
        root = tmp_path / "archive"
        target = {"driver": "directory", "path": str(root), "disk_formats": ["raw"], "retire": {"mode": "deactivate"}}
        path = world.write_config({"targets": {"archive": target}})
        yield Scenario(world, path, lambda: _held(root))


def _held(root: Path) -> list[tuple[str, str, str]]:
    found = []
    for sidecar in root.rglob("*.json"):
        props = json.loads(sidecar.read_text())["properties"]
        state = "retired" if sidecar.relative_to(root).parts[0] == "retired" else "active"
        found.append((props["imagesync_image_id"], props["imagesync_version"], state))
    return found


@pytest.mark.parametrize("point", POINTS, ids=str)
def test_killed_run_converges(scenario: Scenario, point: Point, tmp_path: Path) -> None:
    scenario.play(point)
    scenario.assert_converged([tmp_path / "archive"])


def test_the_ci_set_is_30_points_or_more() -> None:
    assert len(POINTS) >= 30 and len(AIMED) >= 25
