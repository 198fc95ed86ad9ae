"""Glance: taking over cloudkeeper-os / atrope images, and every way of giving a target its credentials."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo.world import DemoWorld, demo_images
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import sync
from tests.devcloud.fixture import DevCloud

IDENTITY = {"service_type": "identity", "interface": "public"}


@pytest.fixture
def tag(devcloud: DevCloud) -> Iterator[str]:
    value = f"imagesync-{uuid.uuid4().hex[:8]}"
    yield value
    glance = devcloud.glance()
    for marker in (value, "atrope"):
        for image in list(glance.images.list(filters={"tag": [marker]})):
            glance.images.delete(image["id"])


def target(devcloud: DevCloud, tag: str, **extra: object) -> dict[str, object]:
    return {"driver": "glance", "tag": tag, "visibility": "private", "region": devcloud.region, **extra}


def password_auth(devcloud: DevCloud) -> dict[str, str]:
    return devcloud.password_auth()


def foreign_image(devcloud: DevCloud, data: bytes, **props: Any) -> str:
    glance = devcloud.glance()
    image = glance.images.create(name="foreign", disk_format="raw", container_format="bare", **props)
    glance.images.upload(image["id"], io.BytesIO(data), image_size=len(data))
    return str(image["id"])


@pytest.mark.parametrize("source", ["cloudkeeper-os", "atrope"])
def test_adopt_matching_images_without_upload(devcloud: DevCloud, world: DemoWorld, tag: str, source: str) -> None:
    alpine, debian = demo_images("1.0")
    world.publish([alpine, debian])
    if source == "atrope":
        match = foreign_image(devcloud, alpine.data, tags=["atrope"], appdb_id=alpine.identifier,
                              sha512=hashlib.sha512(alpine.data).hexdigest())
        other = foreign_image(devcloud, b"x" * 4096, tags=["atrope"], appdb_id=debian.identifier,
                              sha512=hashlib.sha512(b"x" * 4096).hexdigest())
    else:
        match = foreign_image(devcloud, alpine.data, APPLIANCE_ID=alpine.identifier, APPLIANCE_VERSION="1.0",
                              APPLIANCE_VO="demo.vo")
        other = foreign_image(devcloud, debian.data, APPLIANCE_ID=debian.identifier, APPLIANCE_VERSION="0.9")
    path = world.write_config({"targets": {"cloud": target(devcloud, tag, auth=password_auth(devcloud))}})
    cmd = [sys.executable, "-m", "imagesync", "--config", str(path), "adopt", "--from", source]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, timeout=120, check=False)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"planned  cloud: {match} demo-alpine" in dry.stdout
    assert tag not in devcloud.glance().images.get(match).get("tags", [])
    real = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert real.returncode == 0, real.stdout + real.stderr
    assert f"adopted  cloud: {match} demo-alpine" in real.stdout
    assert f"skipped  cloud: {other} demo-debian" in real.stdout
    adopted = devcloud.glance().images.get(match)
    assert tag in adopted["tags"] and adopted["imagesync_image_id"] == "demo-alpine"
    result = sync(config.load(path), dry_run=False)
    assert result.exit_code == EXIT_OK
    by_image = {r.action.identifier: (r.action.kind, r.target_id) for r in result.results}
    assert by_image["demo-alpine"] == ("keep", match)
    assert by_image["demo-debian"][0] == "add"
    assert tag not in devcloud.glance().images.get(other).get("tags", [])
    devcloud.glance().images.delete(other)


def _sync_with(world: DemoWorld, target_settings: dict[str, object]) -> int:
    world.publish(demo_images("1.0")[:1])
    path = world.write_config({"targets": {"cloud": target_settings}})
    return sync(config.load(path), dry_run=False).exit_code


def test_auth_inline_with_password_file(devcloud: DevCloud, world: DemoWorld, tag: str, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(devcloud.user.password + "\n")
    auth = password_auth(devcloud)
    auth.pop("password")
    assert _sync_with(world, target(devcloud, tag, auth={**auth, "password_file": str(secret)})) == EXIT_OK


def test_auth_application_credential(devcloud: DevCloud, world: DemoWorld, tag: str) -> None:
    session = devcloud.session()
    user_id = session.get_user_id()
    body = {"application_credential": {"name": f"imagesync-{tag}"}}
    cred = session.post(f"/users/{user_id}/application_credentials", json=body,
                        endpoint_filter=IDENTITY).json()["application_credential"]
    try:
        auth = {"auth_type": "v3applicationcredential", "auth_url": devcloud.auth_url,
                "application_credential_id": cred["id"], "application_credential_secret": cred["secret"]}
        assert _sync_with(world, target(devcloud, tag, auth=auth)) == EXIT_OK
    finally:
        session.delete(f"/users/{user_id}/application_credentials/{cred['id']}", endpoint_filter=IDENTITY)


def test_auth_clouds_yaml(devcloud: DevCloud, world: DemoWorld, tag: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    auth = password_auth(devcloud)
    auth.pop("auth_type")
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"site": {"auth": auth, "region_name": devcloud.region,
                                                          "interface": "public"}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    assert _sync_with(world, target(devcloud, tag, cloud="site")) == EXIT_OK


def test_auth_environment(devcloud: DevCloud, world: DemoWorld, tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in devcloud.openstack_env().items():
        monkeypatch.setenv(key, value)
    assert _sync_with(world, target(devcloud, tag)) == EXIT_OK


def test_bad_auth_option_is_a_config_error(devcloud: DevCloud, world: DemoWorld, tag: str) -> None:
    auth = {**password_auth(devcloud), "passwd": "x"}
    world.publish(demo_images("1.0")[:1])
    path = world.write_config({"targets": {"cloud": target(devcloud, tag, auth=auth)}})
    result = subprocess.run([sys.executable, "-m", "imagesync", "--config", str(path), "sync"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "targets.cloud.auth.passwd: not an option of auth_type password" in result.stderr + result.stdout
    assert devcloud.user.password not in result.stderr + result.stdout
