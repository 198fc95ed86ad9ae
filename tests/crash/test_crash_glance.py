"""SIGKILL ``imagesync sync`` against the real Keystone + Glance of the dev cloud, start it again, assert convergence.

Aimed at every Glance call a sync makes (create, upload, share, metadata update, deactivate, hide) and at a
state write; the seeded random points strike at a random moment of a run. See README.md for the long run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagesync.demo.world import build
from tests.crash.scenario import RANDOM_POINTS, SEED, Point, Scenario, random_points
from tests.devcloud.fixture import DevCloud

IMAGES = "glanceclient.v2.images:Controller"
AIMED = [
    Point(1, f"{IMAGES}.create@after#1"),
    Point(1, f"{IMAGES}.upload@after#1"),
    Point(1, "glanceclient.v2.image_members:Controller.create@after#1"),
    Point(2, f"{IMAGES}.create@after#1"),
    Point(2, f"{IMAGES}.update@after#1"),
    Point(2, f"{IMAGES}.deactivate@during:5#1"),
    Point(2, f"{IMAGES}.deactivate@after#1"),
    Point(2, "imagesync.state.store:StateStore.transition@after#3"),
]
# About 14 s each against the dev cloud: these join the CI set only in a long run (README.md).
LONG = [
    Point(1, "imagesync.targets.glance.driver:GlanceDriver.add@after#3"),
    Point(2, f"{IMAGES}.upload@after#1"),
    Point(2, f"{IMAGES}.deactivate@after#2"),
]
POINTS = AIMED + (LONG if RANDOM_POINTS else []) + random_points(1 + RANDOM_POINTS // 4, seed=SEED + 1,
                                                                  moment_ms=4000, writes=16)
# With retire mode hide, right after Glance hid an image and before the state recorded it: the next run's plain
# listing no longer shows an image the state holds active, so it must list the hidden ones to find it retired.
HIDDEN = [
    Point(2, "imagesync.targets.glance.driver:GlanceDriver.retire@after#1"),  # the superseded demo-alpine 1.0
    Point(2, "imagesync.targets.glance.driver:GlanceDriver.retire@after#2"),  # demo-debian, gone from the list
]


@pytest.fixture
def scenario(vo_access: DevCloud, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """The scenario into the dev cloud, retiring per ``request.param`` (default deactivate)."""
    cloud = vo_access
    mode = getattr(request, "param", "deactivate")
    secret = tmp_path / "password"
    secret.write_text(cloud.user.password)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"}}))
    tag = f"imagesync-crash-{uuid.uuid4().hex[:8]}"
    with build(tmp_path) as world:
        target = {"driver": "glance", "region": cloud.region, "visibility": "shared", "projects_file": str(mapping),
                  "tag": tag, "disk_formats": ["raw"], "retire": {"mode": mode},
                  "auth": cloud.password_auth(password_file=secret)}
        path = world.write_config({"targets": {"cloud": target}})
        yield Scenario(world, path, lambda: [_status(i) for i in cloud.tagged(tag, hidden=True)])
        glance = cloud.glance()
        for image in cloud.tagged(tag, hidden=True):
            glance.images.delete(image["id"])


def _status(image: Any) -> tuple[str, str, str]:
    status = image["status"]
    if status == "deactivated" or (status == "active" and image.get("os_hidden")):
        status = "retired"
    return image.get("imagesync_image_id", "?"), image.get("imagesync_version", "?"), status


@pytest.mark.parametrize("point", POINTS, ids=str)
def test_killed_run_converges(scenario: Scenario, point: Point, tmp_path: Path) -> None:
    scenario.play(point)
    scenario.assert_converged([])


@pytest.mark.parametrize("scenario", ["hide"], indirect=True)
@pytest.mark.parametrize("point", HIDDEN, ids=str)
def test_killed_hide_retirement_converges(scenario: Scenario, point: Point) -> None:
    scenario.play(point)
    scenario.assert_converged([])
