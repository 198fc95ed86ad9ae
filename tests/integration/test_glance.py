"""Syncs into a real Glance (the dev cloud): what Glance really holds after add, share, update, retire, drift."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo.world import DemoImage, build, demo_images
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.run.pipeline import sync
from imagesync.state.store import StateStore
from tests.devcloud.fixture import DevCloud
from tests.support.runs import CloudEnv, images_v1, kinds

DESIGN_PROPERTIES = ("imagesync_list", "imagesync_list_id", "imagesync_image_id", "imagesync_version",
                     "imagesync_sha512", "vmcatcher_event_ad_mpuri", "vmcatcher_event_dc_title",
                     "vmcatcher_event_dc_description", "APPLIANCE_ATTRIBUTES", "ad_vo", "os_distro", "os_version",
                     "architecture")


class Env(CloudEnv):
    def images(self) -> dict[str, Any]:
        """Every image carrying this test's tag, hidden ones included, by imagesync_image_id + version."""
        return {f"{i['imagesync_image_id']} {i['imagesync_version']}": i
                for i in self.cloud.tagged(self.tag, hidden=True)}


@pytest.fixture
def env(vo_access: DevCloud, tmp_path: Path) -> Iterator[Env]:
    cloud = vo_access
    secret = tmp_path / "password"
    secret.write_text(cloud.user.password)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"},
                                   "beta.vo": {"project": cloud.vo_projects["vo-beta"]}}))
    tag = f"imagesync-{uuid.uuid4().hex[:8]}"
    with build(tmp_path) as world:
        target = {"driver": "glance", "region": cloud.region, "visibility": "shared", "projects_file": str(mapping),
                  "tag": tag, "retire": {"mode": "deactivate"},
                  "auth": cloud.password_auth(password_file=secret)}
        path = world.write_config({"targets": {"cloud": target}})
        yield Env(world, cloud, tag, path)
        glance = cloud.glance()
        for image in Env(world, cloud, tag, path).images().values():
            glance.images.update(image["id"], protected=False)
            glance.images.delete(image["id"])


def test_add_shares_with_the_vo_projects_and_writes_every_property(env: Env) -> None:
    v1 = images_v1()
    env.world.publish(v1)
    result = sync(env.settings(), dry_run=False)
    assert result.exit_code == EXIT_OK, [r.error for r in result.results]
    held = env.images()
    assert sorted(held) == ["demo-alpine 1.0", "demo-debian 1.0"]
    alpine = held["demo-alpine 1.0"]
    assert alpine["status"] == "active" and alpine["visibility"] == "shared"
    assert alpine["os_hash_algo"] == "sha512" and alpine["os_hash_value"] == hashlib.sha512(v1[0].data).hexdigest()
    assert alpine["imagesync_sha512"] == hashlib.sha512(v1[0].data).hexdigest()
    assert all(key in alpine for key in DESIGN_PROPERTIES), [k for k in DESIGN_PROPERTIES if k not in alpine]
    assert alpine["disk_format"] == "raw" and alpine["container_format"] == "bare"
    assert alpine["min_ram"] == 512 and alpine["min_disk"] == 1
    assert alpine["name"] == "Demo Alpine 1.0" and alpine["ad_vo"] == "demo.vo"
    assert json.loads(alpine["APPLIANCE_ATTRIBUTES"])["dc:identifier"] == "demo-alpine"
    glance = env.cloud.glance()
    members = {i: {(m["member_id"], m["status"]) for m in glance.image_members.list(held[i]["id"])} for i in held}
    assert members == {"demo-alpine 1.0": {(env.cloud.vo_projects["vo-alpha"], "accepted")},
                       "demo-debian 1.0": {(env.cloud.vo_projects["vo-beta"], "accepted")}}
    alpha = env.cloud.glance(env.cloud.vo_users["vo-alpha"])
    visible = {i["id"] for i in alpha.images.list()}
    assert alpine["id"] in visible and held["demo-debian 1.0"]["id"] not in visible
    assert b"".join(alpha.images.data(alpine["id"])) == v1[0].data


def keystone_logins(cloud: DevCloud) -> int:
    if cloud.run_dir is None:
        pytest.skip("counts logins in the dev cloud's Keystone log")
    lines = (cloud.run_dir / "logs" / "keystone.log").read_text().splitlines()
    return sum(1 for line in lines if "POST /v3/auth/tokens" in line and '"imagesync keystoneauth1' in line)


def test_shares_into_one_project_are_accepted_with_one_login(env: Env) -> None:
    """Before: each accepted share built a new session scoped to the VO project, a Keystone login per image
    (assert 4 == 2 for three images)."""
    alpine, debian = demo_images("1.0")
    extra = DemoImage("demo-extra", "1.0", "Demo Extra", bytes(range(256)) * 8)
    env.world.publish([alpine, debian, extra])  # all three of the demo VO
    before = keystone_logins(env.cloud)
    result = sync(env.settings(), dry_run=False)
    assert result.exit_code == EXIT_OK, [r.error for r in result.results]
    # imagesync's own project, then each of the two mapped VO projects once: a first run looks in them for copies
    # an earlier per-project run left, and the demo VO's share is accepted through that same login.
    assert keystone_logins(env.cloud) - before == 3
    again = keystone_logins(env.cloud)
    env.world.publish([alpine, debian, extra, DemoImage("demo-more", "1.0", "Demo More", bytes(range(256)) * 4)])
    assert sync(env.settings(), dry_run=False).exit_code == EXIT_OK
    assert keystone_logins(env.cloud) - again == 2  # the state knows every image: no look in VO projects


@pytest.mark.parametrize("mode", ["deactivate", "hide", "delete"])
def test_new_version_then_retire_per_mode(env: Env, mode: str) -> None:
    env.world.publish(images_v1())
    settings = env.settings(retire={"mode": mode})
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    before = env.images()
    env.world.publish([demo_images("2.0")[0]])
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_OK, [r.error for r in result.results]
    assert kinds(result) == [("update", "demo-alpine", "done"), ("retire", "demo-debian", "done")]
    after = env.images()
    assert after["demo-alpine 2.0"]["status"] == "active"
    old = [after.get("demo-alpine 1.0"), after.get("demo-debian 1.0")]
    if mode == "delete":
        assert old == [None, None]
    elif mode == "hide":
        assert [(i["status"], i["os_hidden"]) for i in old if i] == [("active", True), ("active", True)]
    else:
        assert [i["status"] for i in old if i] == ["deactivated", "deactivated"]
    assert after["demo-alpine 2.0"]["id"] not in {i["id"] for i in before.values()}


def test_keep_versions_leaves_the_previous_version_active(env: Env) -> None:
    env.world.publish(images_v1()[:1])
    settings = env.settings(retire={"mode": "deactivate", "keep_versions": 1})
    sync(settings, dry_run=False)
    env.world.publish([demo_images("2.0")[0]])
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("update", "demo-alpine", "done"), ("keep", "demo-alpine", "done")]
    assert result.results[1].action.reason == "older version kept (keep_versions=1)"
    assert {k: v["status"] for k, v in env.images().items()} == {"demo-alpine 1.0": "active",
                                                                 "demo-alpine 2.0": "active"}


def test_metadata_only_change_updates_in_place(env: Env) -> None:
    alpine = images_v1()[0]
    env.world.publish([alpine])
    settings = env.settings()
    sync(settings, dry_run=False)
    first = env.images()["demo-alpine 1.0"]
    env.world.publish([DemoImage(alpine.identifier, alpine.version, "Renamed Alpine", alpine.data)])
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("update-metadata", "demo-alpine", "done")]
    assert result.bytes_downloaded == 0
    now = env.images()["demo-alpine 1.0"]
    assert now["id"] == first["id"] and now["name"] == "Renamed Alpine 1.0"


def test_unmapped_vo_fails_alone(env: Env) -> None:
    alpine, debian = images_v1()
    env.world.publish([alpine, DemoImage(debian.identifier, debian.version, debian.title, debian.data,
                                         vo="nomap.vo")])
    result = sync(env.settings(), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    assert kinds(result) == [("add", "demo-alpine", "done"), ("add", "demo-debian", "failed")]
    assert "VO nomap.vo of demo-debian has no project" in (result.results[1].error or "")
    assert sorted(env.images()) == ["demo-alpine 1.0"]


def test_image_deleted_by_hand_is_re_added_and_state_loss_adopts(env: Env) -> None:
    env.world.publish(images_v1())
    settings = env.settings()
    sync(settings, dry_run=False)
    held = env.images()
    env.cloud.glance().images.delete(held["demo-alpine 1.0"]["id"])
    again = sync(settings, dry_run=False)
    assert ("add", "demo-alpine", "done") in kinds(again)
    assert next(r.action.reason for r in again.results if r.action.kind == "add") == "missing from target: re-add"
    ids = {k: v["id"] for k, v in env.images().items()}
    (settings.state_dir / "state.db").unlink()
    adopted = sync(settings, dry_run=False)
    assert adopted.exit_code == EXIT_OK and adopted.bytes_downloaded == 0
    assert {r.action.reason for r in adopted.results} == {"adopted: identifier, version and sha512 match the list"}
    assert {k: v["id"] for k, v in env.images().items()} == ids


def test_delete_refused_falls_back_to_deactivate_and_retries(env: Env) -> None:
    env.world.publish(images_v1())
    settings = env.settings(retire={"mode": "delete"})
    sync(settings, dry_run=False)
    debian = env.images()["demo-debian 1.0"]
    env.cloud.glance().images.update(debian["id"], protected=True)
    env.world.publish(images_v1()[:1])
    refused = sync(settings, dry_run=False)
    assert refused.exit_code == EXIT_PARTIAL
    assert "deactivated and made private, will retry next run" in (refused.results[-1].error or "")
    now = env.images()["demo-debian 1.0"]
    assert (now["status"], now["visibility"]) == ("deactivated", "private")
    env.cloud.glance().images.update(debian["id"], protected=False)
    retried = sync(settings, dry_run=False)
    assert retried.exit_code == EXIT_OK, [r.error for r in retried.results]
    assert "demo-debian 1.0" not in env.images()


def test_several_targets_one_failing(env: Env) -> None:
    env.world.publish(images_v1())
    data = yaml.safe_load(env.config_path.read_text())
    second = dict(data["targets"]["cloud"], tag=env.tag + "-b")
    broken = dict(data["targets"]["cloud"], auth={**data["targets"]["cloud"]["auth"], "password_file": "/dev/null",
                                                  "password": "wrong"})
    broken["auth"].pop("password_file")
    data["targets"].update({"second": second, "broken": broken})
    env.config_path.write_text(yaml.safe_dump(data))
    result = sync(config.load(env.config_path), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    assert {t.name: t.status for t in result.targets} == {"cloud": "ok", "second": "ok", "broken": "failed"}, [
        t.error for t in result.targets]
    assert "401" in (next(t.error for t in result.targets if t.name == "broken") or "")
    assert result.bytes_downloaded == sum(len(i.data) for i in images_v1())
    assert sorted(env.images()) == ["demo-alpine 1.0", "demo-debian 1.0"]
    glance = env.cloud.glance()
    second_held = list(glance.images.list(filters={"tag": [env.tag + "-b"]}))
    assert len(second_held) == 2
    for image in second_held:
        glance.images.delete(image["id"])


def test_check_resolves_the_mapped_projects(env: Env) -> None:
    env.world.publish(images_v1())
    env.settings()
    result = subprocess.run([sys.executable, "-m", "imagesync", "--config", str(env.config_path), "check"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK    target  cloud: reachable, 0 image(s) tagged" in result.stdout
    projects = env.cloud.vo_projects
    assert f"OK    project cloud VO beta.vo: project id {projects['vo-beta']}" in result.stdout
    assert f"OK    project cloud VO demo.vo: project id {projects['vo-alpha']}" in result.stdout
    assert "OK    mapping cloud: " in result.stdout and "every VO of the subscribed lists mapped (2)" in result.stdout
    assert env.cloud.user.password not in result.stdout + result.stderr


def test_respun_image_supersedes_the_old_bytes(env: Env) -> None:
    alpine = images_v1()[0]
    env.world.publish([alpine])
    settings = env.settings()
    sync(settings, dry_run=False)
    old = env.images()["demo-alpine 1.0"]["id"]
    env.world.publish([DemoImage(alpine.identifier, alpine.version, alpine.title, alpine.data[::-1])])
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("update", "demo-alpine", "done")]
    assert result.results[0].action.reason == "sha512 of version 1.0 changed"
    glance = env.cloud.glance()
    assert glance.images.get(old)["status"] == "deactivated"
    new = result.results[0].target_id
    assert new != old and glance.images.get(new)["os_hash_value"] == hashlib.sha512(alpine.data[::-1]).hexdigest()
    with StateStore.open(settings.state_dir) as store:
        assert {r.target_id: r.state.value for r in store.target_images()} == {old: "retired", new: "active"}
    for image_id in (old, new):
        glance.images.delete(image_id)
