"""``imagesync adopt --from atrope`` taking over what the EGI fork of atrope wrote into Glance (notes: tag
``atrope-catchall``, ``appdb_id`` = ``<registry>/<repo>:<tag>-<manifest digest>``, ``image_hash`` =
``sha256:<layer>`` or ``sha512:<hex>``), against the real devcloud and the real test registry (htpasswd)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.config import settings as config
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import SyncResult, sync
from imagesync.state.store import StateStore
from tests.devcloud.fixture import DevCloud
from tests.support.oci_push import Pushed
from tests.support.oci_registry import Registries
from tests.support.oci_site import EGI, Site, disk, new_site

CATCHALL = "atrope-catchall"


@pytest.fixture
def tag(devcloud: DevCloud) -> Iterator[str]:
    value = f"imagesync-{uuid.uuid4().hex[:8]}"
    yield value
    glance = devcloud.glance()
    for marker in (value, CATCHALL, "egi-sync"):
        for image in list(glance.images.list(filters={"tag": [marker]})):
            glance.images.delete(image["id"])


@pytest.fixture
def site(tmp_path: Path, oci_registries: Registries) -> Site:
    return new_site(tmp_path, oci_registries.get("htpasswd"))


def glance_target(devcloud: DevCloud, tag: str) -> dict[str, object]:
    return {"cloud": {"driver": "glance", "tag": tag, "visibility": "private", "region": devcloud.region,
                      "auth": devcloud.password_auth()}}


def egi_image(devcloud: DevCloud, data: bytes, *, tags: tuple[str, ...] = (CATCHALL,), **props: str) -> str:
    """An image as the EGI fork of atrope leaves it (atrope/dispatcher/glance.py), bytes included."""
    glance = devcloud.glance()
    image = glance.images.create(name=f"egi {props['appdb_id'][:40]}", disk_format="raw", container_format="bare",
                                 tags=list(tags), vmcatcher_event_ad_mpuri=props["appdb_id"], image_list="egi",
                                 vmcatcher_event_dc_description="EGI Ubuntu 24.04 image", **props)
    glance.images.upload(image["id"], io.BytesIO(data), image_size=len(data))
    return str(image["id"])


def registry_image(devcloud: DevCloud, site: Site, pushed: Pushed, data: bytes) -> tuple[str, str]:
    """The EGI fork's image of ``pushed`` (tag 24.04): its Glance id and atrope's identifier."""
    identifier = f"{site.server.host}/{site.repository}:24.04-{pushed.digest}"
    reference = f"{site.repository}:24.04"
    attributes = json.dumps({**EGI, "eu.egi.cloud.image_ref": reference})
    image_id = egi_image(devcloud, data, appdb_id=identifier, image_hash=pushed.layer_digest,
                         APPLIANCE_ATTRIBUTES=attributes, os_distro="ubuntu", os_version="24.04")
    return image_id, identifier


def adopt(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "imagesync", "--config", str(path), "adopt", "--from", "atrope", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    return done


def by_image(result: SyncResult) -> dict[str, tuple[str, str | None]]:
    return {r.action.identifier: (r.action.kind, r.target_id) for r in result.results}


def test_an_egi_registry_image_still_served_is_adopted_without_upload_and_kept(
        devcloud: DevCloud, site: Site, tag: str) -> None:
    data = disk(b"ubuntu 24.04 build one")
    pushed = site.push("24.04", data)
    image_id, identifier = registry_image(devcloud, site, pushed, data)
    settings = site.config(targets=glance_target(devcloud, tag))
    dry = adopt(site.config_file, "--dry-run")
    assert f"planned  cloud: {image_id} {identifier} (the registry still serves" in dry.stdout
    done = adopt(site.config_file)
    assert f"adopted  cloud: {image_id} {identifier}" in done.stdout, done.stdout
    held = devcloud.glance().images.get(image_id)
    sha512 = hashlib.sha512(data).hexdigest()
    assert tag in held["tags"] and held["os_hash_value"] == sha512
    assert (held["imagesync_image_id"], held["imagesync_version"], held["imagesync_sha512"]) == (
        f"{site.server.host}/{site.repository}:24.04", pushed.digest, sha512)
    assert held["vmcatcher_event_ad_mpuri"] == identifier
    with StateStore.open(settings.state_dir) as store:
        assert [(r.version, r.sha512) for r in store.images("reg")] == [(pushed.digest, sha512)]
        [record] = store.target_images(target="cloud")
        assert (record.target_id, record.sha512, record.state.value) == (image_id, sha512, "active")
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_OK, [r.error for r in result.results]
    assert list(by_image(result).values()) == [("keep", image_id)]
    assert result.bytes_downloaded == 0


def test_an_egi_registry_image_of_a_digest_no_longer_served_is_left_alone(
        devcloud: DevCloud, site: Site, tag: str) -> None:
    old = disk(b"ubuntu 24.04 build one")
    image_id, identifier = registry_image(devcloud, site, site.push("24.04", old), old)
    new = site.push("24.04", disk(b"ubuntu 24.04 build two"))
    settings = site.config(targets=glance_target(devcloud, tag))
    done = adopt(site.config_file)
    line = f"skipped  cloud: {image_id} {identifier} (the registry serves {new.digest[:19]} under this tag now"
    assert line in done.stdout, done.stdout
    assert tag not in devcloud.glance().images.get(image_id).get("tags", [])
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_OK, [r.error for r in result.results]
    [(kind, new_id)] = by_image(result).values()
    assert kind == "add" and new_id != image_id and result.bytes_downloaded > 0
    untouched = devcloud.glance().images.get(image_id)
    assert untouched["status"] == "active" and tag not in untouched.get("tags", [])


@pytest.mark.parametrize("atrope_tag", [None, "egi-sync"])
def test_a_list_image_with_an_egi_sha512_image_hash_is_adopted(
        devcloud: DevCloud, world: DemoWorld, tag: str, atrope_tag: str | None) -> None:
    alpine = demo_images("1.0")[0]
    world.publish([alpine])
    image_id = egi_image(devcloud, alpine.data, tags=(atrope_tag or CATCHALL,), appdb_id=alpine.identifier,
                         image_hash=f"sha512:{hashlib.sha512(alpine.data).hexdigest()}")
    path = world.write_config({"targets": glance_target(devcloud, tag)})
    done = adopt(path, *(("--atrope-tag", atrope_tag) if atrope_tag else ()))
    assert f"adopted  cloud: {image_id} demo-alpine (identifier and sha512 match)" in done.stdout, done.stdout
    result = sync(config.load(path), dry_run=False)
    assert result.exit_code == EXIT_OK
    assert by_image(result)["demo-alpine"] == ("keep", image_id) and result.bytes_downloaded == 0
