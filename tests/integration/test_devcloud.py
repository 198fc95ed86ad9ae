"""The dev cloud is a real Keystone + Glance that behaves as the Glance driver will rely on."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from glanceclient import exc as glance_exc  # type: ignore[import-untyped,unused-ignore]

from tests.devcloud.fixture import DEVCLOUD, DevCloud, from_cloud_json, run_devcloud

MIB = 1024 * 1024
PROPERTY = ("imagesync:list", "https://example.org/lists/a:b")  # colons in key and value


def _payload(seed: bytes) -> bytes:
    # Non-repeating bytes so a truncated or shuffled upload changes the hash.
    return b"".join(hashlib.sha512(seed + i.to_bytes(4, "big")).digest() for i in range(MIB // 64))


def _download(glance: Any, image_id: str) -> bytes:
    return b"".join(glance.images.data(image_id))


def _wait_status(glance: Any, image_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        image: dict[str, Any] = dict(glance.images.get(image_id))
        if image["status"] == "active" or image.get("os_glance_failed_import"):
            return image
        if time.monotonic() > deadline:
            raise AssertionError(f"image {image_id} still {image['status']} after {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def image(devcloud: DevCloud) -> Iterator[tuple[str, bytes]]:
    """An active raw image of 1 MiB owned by the imagesync project; deleted afterwards."""
    glance = devcloud.glance()
    data = _payload(b"devcloud")
    created = glance.images.create(
        name="devcloud-test", disk_format="raw", container_format="bare", **{PROPERTY[0]: PROPERTY[1]}
    )
    try:
        glance.images.upload(created["id"], io.BytesIO(data), image_size=len(data))
        yield created["id"], data
    finally:
        glance.images.delete(created["id"])


def test_upload_keeps_colon_property_and_sha512(devcloud: DevCloud, image: tuple[str, bytes]) -> None:
    image_id, data = image
    got = devcloud.glance().images.get(image_id)
    assert got["status"] == "active"
    assert got["size"] == len(data) == MIB
    assert got["os_hash_algo"] == "sha512"
    assert got["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert got[PROPERTY[0]] == PROPERTY[1]
    assert _download(devcloud.glance(), image_id) == data


def test_shared_image_reaches_accepting_member_until_deactivated(devcloud: DevCloud, image: tuple[str, bytes]) -> None:
    alpha_name = devcloud.require_vos(1)[0]
    alpha_project, alpha_user = devcloud.vo_projects[alpha_name], devcloud.vo_users[alpha_name]
    image_id, data = image
    owner, member = devcloud.glance(), devcloud.glance(alpha_user)
    with pytest.raises(glance_exc.HTTPNotFound):
        member.images.get(image_id)  # private to the imagesync project until shared

    owner.images.update(image_id, visibility="shared")
    owner.image_members.create(image_id, alpha_project)
    member.image_members.update(image_id, alpha_project, "accepted")

    assert image_id in {i["id"] for i in member.images.list()}
    assert _download(member, image_id) == data
    owner.images.deactivate(image_id)
    with pytest.raises(glance_exc.HTTPForbidden):
        _download(member, image_id)


def test_glance_direct_import(devcloud: DevCloud) -> None:
    glance = devcloud.glance()
    data = _payload(b"glance-direct")
    created = glance.images.create(name="devcloud-direct", disk_format="raw", container_format="bare")
    try:
        glance.images.stage(created["id"], io.BytesIO(data), image_size=len(data))
        glance.images.image_import(created["id"], method="glance-direct")
        done = _wait_status(glance, created["id"])
        assert done["status"] == "active", done.get("os_glance_failed_import")
        assert done["os_hash_value"] == hashlib.sha512(data).hexdigest()
    finally:
        glance.images.delete(created["id"])


@pytest.fixture
def served_file(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A URL on 127.0.0.1 serving 1 MiB of known bytes over plain HTTP."""
    data = _payload(b"web-download")
    (tmp_path / "disk.raw").write_bytes(data)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            pass

    def handler(*args: Any) -> http.server.SimpleHTTPRequestHandler:
        return Handler(*args, directory=str(tmp_path))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/disk.raw", data
    finally:
        server.shutdown()
        server.server_close()


def test_web_download_import_from_loopback(devcloud: DevCloud, served_file: tuple[str, bytes]) -> None:
    if devcloud.run_dir is None:
        pytest.skip("an external cloud cannot reach this machine's loopback")
    url, data = served_file
    glance = devcloud.glance()
    created = glance.images.create(name="devcloud-web", disk_format="raw", container_format="bare")
    try:
        glance.images.image_import(created["id"], method="web-download", uri=url)
        done = _wait_status(glance, created["id"])
        assert done["status"] == "active", done.get("os_glance_failed_import")
        assert done["os_hash_value"] == hashlib.sha512(data).hexdigest()
    finally:
        glance.images.delete(created["id"])


def test_second_start_is_warm_and_rewrites_the_catalog(devcloud: DevCloud, tmp_path: Path) -> None:
    if devcloud.run_dir is None:
        pytest.skip("only for the dev cloud started by the fixture")
    run_dir = tmp_path / "second"
    started = time.monotonic()
    run_devcloud("start", "--dir", str(run_dir))
    try:
        elapsed = time.monotonic() - started
        doc = json.loads((run_dir / "cloud.json").read_text())
        print(f"second dev cloud: {doc['start']['mode']} start took {elapsed:.1f} s")
        assert doc["start"]["mode"] == "warm"
        second = from_cloud_json(run_dir / "cloud.json")
        assert second.auth_url != devcloud.auth_url
        session = second.session()
        endpoint = session.get_endpoint(service_type="image", interface="public", region_name=second.region)
        assert endpoint is not None
        assert endpoint.rstrip("/") == second.glance_url
        assert session.get_project_id() == devcloud.session().get_project_id()  # same template, same ids
        assert list(second.glance().images.list()) == []
        assert elapsed < 30
    finally:
        run_devcloud("stop", "--dir", str(run_dir))
    assert not list(run_dir.glob("*.pid"))
    with pytest.raises(OSError):
        urllib.request.urlopen(second.auth_url, timeout=5)


def test_openrc_matches_the_fixture(devcloud: DevCloud) -> None:
    if devcloud.run_dir is None:
        pytest.skip("only for the dev cloud started by the fixture")
    sourced = subprocess.run(
        ["bash", "-c", f'set -a; . "{devcloud.run_dir}/openrc"; env'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout
    exported = dict(line.split("=", 1) for line in sourced.splitlines() if line.startswith("OS_"))
    assert exported == devcloud.openstack_env()
    assert exported["OS_USERNAME"] == exported["OS_PROJECT_NAME"] == "imagesync"


def test_start_refuses_a_foreign_directory(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("not a dev cloud")
    result = subprocess.run(
        [sys.executable, str(DEVCLOUD), "start", "--dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "not a dev cloud directory" in result.stderr
    assert precious.read_text() == "not a dev cloud"
    assert not list(tmp_path.glob("*.pid"))
