"""A site file describing the dev cloud, in the fedcloud-catchall-operations shape, synced as a Glance target."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo.world import DemoWorld, build, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import sync
from tests.devcloud.fixture import DevCloud

SITE = "DEVCLOUD-SITE"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DemoWorld]:
    with build(tmp_path) as demo:
        yield demo


def site_config(world: DemoWorld, cloud: DevCloud, tag: str) -> Path:
    sites = world.root / "sites"
    sites.mkdir()
    # As EGI keeps it: the Keystone endpoint, the formats Glance takes, each VO with its project's id.
    (sites / f"{SITE}.yaml").write_text(yaml.safe_dump({
        "gocdb": SITE, "endpoint": cloud.auth_url, "region": cloud.region, "protocol": "openid",
        "images": {"sync": True, "formats": ["qcow2", "raw"]},
        "vos": [{"name": "demo.vo", "auth": {"project_id": cloud.vo_projects["vo-alpha"]}},
                {"name": "other.vo", "auth": {"region": "elsewhere"}}]}))
    (sites / "SLEEPING-SITE.yaml").write_text(yaml.safe_dump({
        "gocdb": "SLEEPING-SITE", "endpoint": "https://unreachable.invalid:5000/v3", "images": {"sync": False}}))
    secret = world.root / "password"
    secret.write_text(cloud.user.password)
    secret.chmod(0o600)
    auth = {k: v for k, v in cloud.password_auth(password_file=secret).items() if k != "auth_url"}
    return world.write_config({"sites_dir": "sites", "site_defaults": {
        "auth": auth, "tag": tag, "retire": {"mode": "delete", "delete_after": None}, "timeout": 120}})


def test_a_site_of_a_sites_dir_is_synced_and_shared_with_its_vo_project(world: DemoWorld, vo_access: DevCloud) -> None:
    cloud, tag = vo_access, f"imagesync-site-{uuid.uuid4().hex[:8]}"
    images = demo_images("1.0")
    world.publish(list(images))
    settings = config.load(site_config(world, cloud, tag))
    assert [t.name for t in settings.targets] == [SITE]  # the site with sync: false is no target
    try:
        result = sync(settings, dry_run=False)
        assert result.exit_code == EXIT_OK, [r.error for r in result.results]
        assert {r.action.target for r in result.results} == {SITE}
        held = {i["imagesync_image_id"]: i for i in cloud.tagged(tag)}
        assert sorted(held) == sorted(i.identifier for i in images)
        alpha = cloud.vo_projects["vo-alpha"]
        glance = cloud.glance()
        for image in images:
            found = held[image.identifier]
            assert found["visibility"] == "shared" and found["status"] == "active"
            assert found["os_hash_value"] == hashlib.sha512(image.data).hexdigest()
            members = {(m["member_id"], m["status"]) for m in glance.image_members.list(found["id"])}
            assert members == {(alpha, "accepted")}
        member_view = {i["id"] for i in cloud.glance(cloud.vo_users["vo-alpha"]).images.list()}
        assert {i["id"] for i in held.values()} <= member_view
    finally:
        for leftover in cloud.tagged(tag):
            cloud.glance().images.delete(leftover["id"])
