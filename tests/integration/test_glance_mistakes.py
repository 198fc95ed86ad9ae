"""Mistakes in a Glance target's setup, caught by plan and check against the real dev cloud (Keystone + Glance):
an unmapped VO, a mapped project that does not exist or where the user holds no role, an unreachable Glance."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, DemoWorld, build, demo_images
from imagesync.run.pipeline import sync
from tests.devcloud.fixture import IDENTITY, Credentials, DevCloud

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    world: DemoWorld
    cloud: DevCloud
    tag: str
    mapping: Path

    def config(self, user: Credentials | None = None, **target: object) -> Path:
        settings = {"driver": "glance", "region": self.cloud.region, "visibility": "shared",
                    "projects_file": str(self.mapping), "tag": self.tag,
                    "auth": self.cloud.password_auth(user), **target}
        return self.world.write_config({"targets": {"cloud": settings}})

    def run(self, *args: str, config_path: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "imagesync", "--config", str(config_path), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, env=env)

    def held(self) -> list[dict[str, Any]]:
        return list(self.cloud.glance().images.list(filters={"tag": [self.tag]}))


@pytest.fixture
def env(vo_access: DevCloud, tmp_path: Path) -> Iterator[Env]:
    tag = f"imagesync-{uuid.uuid4().hex[:8]}"
    with build(tmp_path) as world:
        current = Env(world, vo_access, tag, tmp_path / "mapping.json")
        yield current
        glance = vo_access.glance()
        for image in current.held():
            glance.images.delete(image["id"])


@pytest.fixture
def roleless_project(vo_access: DevCloud) -> Iterator[tuple[str, str]]:
    """(name, id) of a project that exists but where neither the imagesync user nor the admin holds a role."""
    admin = vo_access.session(vo_access.require_admin())
    name = f"vo-gamma-{uuid.uuid4().hex[:6]}"
    created = admin.post("/projects", json={"project": {"name": name, "domain_id": "default"}},
                         endpoint_filter=IDENTITY).json()["project"]
    yield name, created["id"]
    admin.patch(f"/projects/{created['id']}", json={"project": {"enabled": False}}, endpoint_filter=IDENTITY)
    admin.delete(f"/projects/{created['id']}", endpoint_filter=IDENTITY)


def unmapped_world(env: Env) -> tuple[DemoImage, DemoImage]:
    alpine, debian = demo_images()
    stray = DemoImage(debian.identifier, debian.version, debian.title, debian.data, vo="unmapped.vo")
    env.world.publish([alpine, stray])
    env.mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"}}))
    return alpine, stray


def test_plan_shows_an_unmapped_vo_as_a_planned_failure_and_where_each_image_goes(env: Env) -> None:
    alpine, stray = unmapped_world(env)
    config_path = env.config()
    result = env.run("plan", "--format", "json", config_path=config_path)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    actions = {a["image"]: a for a in report["actions"]}
    assert actions["demo-alpine"] | {"target_id": None} == {
        "target": "cloud", "list": "demo", "image": "demo-alpine", "version": "1.0", "title": "Demo Alpine",
        "action": "add", "reason": "new image", "status": "planned", "error": None, "target_id": None,
        "image_name": "Demo Alpine 1.0", "vo": "demo.vo", "project": "vo-alpha", "format": "raw",
        "convert_from": None, "size": len(alpine.data)}
    refused = actions["demo-debian"]
    assert (refused["action"], refused["status"]) == ("add", "failed")
    assert refused["error"] == (f"target cloud: VO unmapped.vo of demo-debian has no project in {env.mapping} "
                                "(add it to the mapping file, or use visibility private/community)")
    assert (refused["image_name"], refused["vo"], refused["project"], refused["size"]) == (
        "Demo Debian 1.0", "unmapped.vo", None, len(stray.data))
    assert report["summary"]["add"] == 1 and report["summary"]["failed"] == 1
    text = env.run("plan", config_path=config_path).stdout
    assert ('  add             cloud: demo/demo-alpine 1.0 (new image) -> planned  [name "Demo Alpine 1.0", '
            "vo demo.vo, project vo-alpha, format raw, 64.0 KiB]") in text
    assert ('  add             cloud: demo/demo-debian 1.0 (new image) -> FAILED: target cloud: VO unmapped.vo of '
            "demo-debian has no project in") in text
    assert "planned: 1 add, 0 update, 0 update-metadata, 0 retire, 0 keep, 1 failed;" in text


def test_sync_never_downloads_an_image_its_vo_cannot_take(env: Env) -> None:
    alpine, _ = unmapped_world(env)
    result = sync(config.load(env.config()), dry_run=False)
    assert [(r.action.identifier, r.action.kind, r.status) for r in result.results] == [
        ("demo-alpine", "add", "done"), ("demo-debian", "add", "failed")]
    assert result.bytes_downloaded == len(alpine.data)
    assert [image["imagesync_image_id"] for image in env.held()] == ["demo-alpine"]


def project_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    prefix = "project cloud VO "
    return {line[6 + len(prefix):].split(":", 1)[0]: line for line in result.stdout.splitlines()
            if line[6:].startswith(prefix)}


def test_check_tells_a_missing_project_from_a_missing_role(env: Env, roleless_project: tuple[str, str]) -> None:
    name, project_id = roleless_project
    env.world.publish(demo_images())
    env.mapping.write_text(json.dumps({"gamma.vo": {"project": name, "domain": "Default"},
                                       "gamma-id.vo": {"project": project_id},
                                       "ghost.vo": {"project": "no-such-project"},
                                       "ghost-id.vo": {"project": "0" * 32}}))
    # An account Keystone lets look projects up (here the admin) gets told which of the two it is.
    admin = env.cloud.require_admin()
    lines = project_lines(env.run("check", config_path=env.config(admin)))
    no_role = (f"exists, but the imagesync user holds no role in it (grant it one, e.g. openstack role add --user "
               f"{admin.username} --project")
    assert f"VO gamma.vo: project {name} (domain Default) {no_role} {name} member" in lines["gamma.vo"]
    assert f"VO gamma-id.vo: project {project_id} {no_role} {project_id} member" in lines["gamma-id.vo"]
    assert (f"VO ghost.vo: project no-such-project does not exist (correct the entry of ghost.vo in {env.mapping})"
            in lines["ghost.vo"])
    assert f"VO ghost-id.vo: project {'0' * 32} does not exist" in lines["ghost-id.vo"]
    assert all(line.startswith("FAIL  ") for line in lines.values())


def test_check_says_when_keystone_does_not_let_the_user_tell(env: Env, roleless_project: tuple[str, str]) -> None:
    name, _ = roleless_project
    env.world.publish(demo_images())
    env.mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"},
                                       "gamma.vo": {"project": name}, "ghost.vo": {"project": "no-such-project"}}))
    result = env.run("check", config_path=env.config())
    assert result.returncode == 1, result.stdout + result.stderr
    lines = project_lines(result)
    assert lines["demo.vo"] == f"OK    project cloud VO demo.vo: project id {env.cloud.vo_projects['vo-alpha']}"
    for vo, project in (("gamma.vo", name), ("ghost.vo", "no-such-project")):
        assert lines[vo].startswith(f"FAIL  project cloud VO {vo}: target cloud: VO {vo}: project {project} is not "
                                    "among the projects the imagesync user holds a role in, and Keystone does not "
                                    "let it look projects up (HTTP 403), so whether the project exists cannot be "
                                    "told"), lines[vo]


def test_check_names_an_unreachable_glance(env: Env) -> None:
    env.world.publish(demo_images())
    env.mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"}}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = env.run("check", config_path=env.config(endpoint=f"http://127.0.0.1:{port}"))
    target = next(line for line in result.stdout.splitlines() if line[6:].startswith("target"))
    assert target == (f"FAIL  target  cloud: target cloud: list images: cannot reach http://127.0.0.1:{port}: "
                      "connection refused")

