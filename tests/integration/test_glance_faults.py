"""The Glance driver against a real Glance that fails on cue (through GlanceProxy) or refuses the data itself."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from uuid import uuid4

import pytest

from imagesync.config.settings import TargetSettings
from imagesync.model import DesiredImage, Image
from imagesync.targets.base import TargetError, Upload
from imagesync.targets.glance.driver import GlanceDriver
from tests.devcloud.fixture import DevCloud
from tests.support.glance_proxy import GlanceProxy

MIB = 1024 * 1024
UPLOAD_PUT = r"^/v2/images/[0-9a-f-]+/file$"
TARGET = "faulty-glance"


@pytest.fixture
def proxy(devcloud: DevCloud) -> Iterator[GlanceProxy]:
    with GlanceProxy(devcloud.glance_url) as running:
        yield running


@pytest.fixture
def tag(devcloud: DevCloud) -> Iterator[str]:
    with devcloud.test_tag() as unique:
        yield unique


def _driver(devcloud: DevCloud, proxy: GlanceProxy, tag: str) -> GlanceDriver:
    settings = TargetSettings(
        name=TARGET, driver="glance", tag=tag, visibility="private", region=devcloud.region, endpoint=proxy.url,
        auth=devcloud.password_auth())
    # No real back-off between upload attempts: the faults are injected, waiting would only slow the tests.
    return GlanceDriver(settings, sleep=lambda _seconds: None)


def _upload(tmp_path: Path, data: bytes, disk_format: str = "raw") -> Upload:
    path = tmp_path / "image.img"
    path.write_bytes(data)
    sha512 = hashlib.sha512(data).hexdigest()
    identifier = uuid4().hex
    image = Image(identifier=identifier, uri=f"https://lists.example.org/{identifier}.img", sha512=sha512,
                  size=len(data), version="1", title="Fault test", description=None, arch="x86_64", os_name=None,
                  os_version=None, format=disk_format, vo=None, ram_minimum=None, core_minimum=None, mpuri=None,
                  expires=None, attributes=MappingProxyType({"dc:title": "Fault test"}))
    desired = DesiredImage(list_name="faults", list_identifier="faults-list", image=image)
    return Upload(desired=desired, path=path, disk_format=disk_format, virtual_size=len(data), size=len(data),
                  sha512=sha512)


def _payload(seed: str, size: int = MIB) -> bytes:
    # Non-repeating bytes: an upload cut short or replayed from the wrong offset changes the hash.
    return b"".join(hashlib.sha512(f"{seed}:{i}".encode()).digest() for i in range(size // 64))


def test_upload_retried_into_the_same_image_after_a_503(devcloud: DevCloud, proxy: GlanceProxy, tag: str,
                                                        tmp_path: Path) -> None:
    upload = _upload(tmp_path, _payload("retry"))
    proxy.fail_next("PUT", UPLOAD_PUT, 503)
    driver = _driver(devcloud, proxy, tag)
    try:
        image_id = driver.add(upload)
    finally:
        driver.close()
    images = devcloud.tagged(tag)
    assert [image["id"] for image in images] == [image_id]
    assert images[0]["status"] == "active"
    assert images[0]["os_hash_value"] == upload.sha512
    assert proxy.seen("PUT", UPLOAD_PUT) == [503, 204]
    assert [s.path for s in proxy.requests if s.method == "PUT"] == [f"/v2/images/{image_id}/file"] * 2


def _failed_add(devcloud: DevCloud, proxy: GlanceProxy, tag: str, upload: Upload) -> str:
    """The one-line error of an add that must fail; it names the target."""
    driver = _driver(devcloud, proxy, tag)
    try:
        with pytest.raises(TargetError) as caught:
            driver.add(upload)
    finally:
        driver.close()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"target {TARGET}: ")
    return message


def test_upload_failing_every_time_leaves_no_image(devcloud: DevCloud, proxy: GlanceProxy, tag: str,
                                                   tmp_path: Path) -> None:
    proxy.fail_next("PUT", UPLOAD_PUT, 503, times=100)
    message = _failed_add(devcloud, proxy, tag, _upload(tmp_path, _payload("always")))
    assert "503" in message
    puts = proxy.seen("PUT", UPLOAD_PUT)
    assert len(puts) >= 2 and set(puts) == {503}  # retried, and never reached Glance
    assert proxy.seen("DELETE", r"^/v2/images/[0-9a-f-]+$") == [204]
    assert devcloud.tagged(tag) == []


def test_inventory_survives_an_expired_token(devcloud: DevCloud, proxy: GlanceProxy, tag: str,
                                             tmp_path: Path) -> None:
    driver = _driver(devcloud, proxy, tag)
    try:
        image_id = driver.add(_upload(tmp_path, _payload("inventory")))
        before = len(proxy.requests)
        proxy.fail_next("GET", r"^/v2/images\?", 401)
        held = driver.inventory()
    finally:
        driver.close()
    assert [h.target_id for h in held] == [image_id]
    lists = [s for s in proxy.requests[before:] if s.method == "GET" and s.path.startswith("/v2/images?")]
    assert [s.status for s in lists[:2]] == [401, 200]
    assert lists[0].path == lists[1].path  # the same listing, asked again with a new token
    assert all(s.status == 200 for s in lists[1:])


def test_glance_refusing_data_that_is_not_the_declared_format(devcloud: DevCloud, proxy: GlanceProxy, tag: str,
                                                              tmp_path: Path) -> None:
    message = _failed_add(devcloud, proxy, tag, _upload(tmp_path, _payload("raw-bytes"), disk_format="qcow2"))
    assert re.search(r"415|format", message)
    assert proxy.seen("PUT", UPLOAD_PUT) == [415]  # Glance's own answer, not retried
    assert devcloud.tagged(tag) == []
