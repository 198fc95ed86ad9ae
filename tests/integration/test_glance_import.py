"""Glance fetches the bytes itself (``upload: web-download | glance-direct | auto``), against the devcloud's Glance 33.

The images are served by a plain-HTTP ListServer on 127.0.0.1: the devcloud's Glance allows web-download from
127.0.0.1 (``[import_filtering_opts]``), and it downloads with the system's CA bundle, which the test CA is not in;
serving HTTPS would mean changing the trust store of the Glance process, and TLS is not what is tested here.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from uuid import uuid4

import pytest

from imagesync.config.settings import TargetSettings
from imagesync.demo.server import Fault, ListServer
from imagesync.model import DesiredImage, Image
from imagesync.targets.base import TargetError, Upload
from imagesync.targets.glance.driver import GlanceDriver
from imagesync.targets.glance.inventory import PENDING
from tests.devcloud.fixture import DevCloud

KIB = 1024
IMPORTING = "imagesync.targets.glance.importing"
# What differs between two images of the same bytes and metadata however they were made.
VOLATILE = {"id", "created_at", "updated_at", "file", "self", "direct_url", "locations", "stores", "tags",
            "imagesync_tag"}


@pytest.fixture
def server() -> Iterator[ListServer]:
    with ListServer(tls=False) as running:
        yield running


@pytest.fixture
def tag(vo_access: DevCloud) -> Iterator[str]:
    with vo_access.test_tag() as unique:
        yield unique


def driver(cloud: DevCloud, tag: str, tmp_path: Path, **target: Any) -> GlanceDriver:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"}}))
    settings = TargetSettings(name="pulling", driver="glance", tag=tag, visibility="shared", projects_file=mapping,
                              region=cloud.region, auth=cloud.password_auth(), **target)
    return GlanceDriver(settings)  # real pauses: polling an import must not spin on a 2-core machine


def payload(seed: str, size: int = 64 * KIB) -> bytes:
    return b"".join(hashlib.sha512(f"{seed}:{i}".encode()).digest() for i in range(size // 64))


def upload(tmp_path: Path, data: bytes, uri: str, *, local: bytes | None = None, sha256: str = "") -> Upload:
    """An image whose list says ``data`` (sha512, size) at ``uri``; ``local`` is what the sync host holds."""
    path = tmp_path / f"{uuid4().hex}.img"
    path.write_bytes(data if local is None else local)
    sha512 = hashlib.sha512(data).hexdigest()
    identifier = uuid4().hex
    image = Image(identifier=identifier, uri=uri, sha512=sha512, size=len(data), version="1", title="Import test",
                  description="pulled by Glance", arch="x86_64", os_name="Alpine", os_version="3.20", format="raw",
                  vo="demo.vo", ram_minimum=None, core_minimum=None, mpuri=None, expires=None,
                  attributes=MappingProxyType({"dc:title": "Import test"}), sha256=sha256)
    desired = DesiredImage(list_name="imports", list_identifier="imports-list", image=image)
    return Upload(desired=desired, path=path, disk_format="raw", virtual_size=len(data), size=len(data),
                  sha512=sha512)


def members(cloud: DevCloud, image_id: str) -> set[str]:
    return {m["member_id"] for m in cloud.glance().image_members.list(image_id)}


def comparable(image: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in image.items() if k not in VOLATILE and not k.startswith("os_glance_")}


@pytest.mark.parametrize("stores", [{}, {"stores": ("local",)}, {"all_stores": True}], ids=["default", "stores",
                                                                                            "all-stores"])
def test_web_download_arrives_verified_like_a_direct_upload(vo_access: DevCloud, server: ListServer, tag: str,
                                                            tmp_path: Path, stores: dict[str, Any]) -> None:
    data = payload("pulled")
    server.put("/pulled.img", data)
    pulled = upload(tmp_path, data, server.url("/pulled.img"))
    pulled_id = driver(vo_access, tag, tmp_path, upload="web-download", **stores).add(pulled)
    direct_id = driver(vo_access, f"{tag}-direct", tmp_path).add(pulled)
    glance = vo_access.glance()
    try:
        assert server.hits("/pulled.img") == 1  # Glance fetched it; the direct upload did not ask the server
        got, reference = dict(glance.images.get(pulled_id)), dict(glance.images.get(direct_id))
        assert got["status"] == "active" and got["os_hash_value"] == pulled.sha512 and got["size"] == len(data)
        assert PENDING not in got and got["visibility"] == "shared"
        assert comparable(got) == comparable(reference)
        assert (got["tags"], got["imagesync_tag"]) == ([tag], tag)  # the reference's tag is another one
        assert members(vo_access, pulled_id) == members(vo_access, direct_id) == {vo_access.vo_projects["vo-alpha"]}
    finally:
        glance.images.delete(direct_id)


def test_unknown_store_is_sent_and_refused_then_direct(vo_access: DevCloud, server: ListServer, tag: str,
                                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # One store on the devcloud: that the parameter reaches Glance shows in Glance refusing a store it lacks.
    server.put("/stored.img", data := payload("stored"))
    item = upload(tmp_path, data, server.url("/stored.img"))
    with caplog.at_level(logging.WARNING, logger=IMPORTING):
        image_id = driver(vo_access, tag, tmp_path, upload="web-download", stores=("nowhere",)).add(item)
    assert server.hits("/stored.img") == 0
    assert [i["id"] for i in vo_access.tagged(tag)] == [image_id]
    # Glance 33 answers an unknown store id with 409 (glance_store.UnknownScheme turned into Conflict).
    assert "web-download import failed" in caplog.text and "HTTP 409" in caplog.text


def test_wrong_bytes_are_refused_deleted_and_uploaded_directly(vo_access: DevCloud, server: ListServer, tag: str,
                                                               tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    data = payload("right")
    server.put("/evil.img", payload("wrong"))  # same size: only the hash tells
    item = upload(tmp_path, data, server.url("/evil.img"))
    with caplog.at_level(logging.WARNING, logger=IMPORTING):
        image_id = driver(vo_access, tag, tmp_path, upload="web-download").add(item)
    assert server.hits("/evil.img") == 1
    held = vo_access.tagged(tag)
    assert [(i["id"], i["os_hash_value"]) for i in held] == [(image_id, item.sha512)]
    assert "os_hash_value" in caplog.text and "uploading directly" in caplog.text


def test_wrong_bytes_everywhere_fail_in_one_line_and_leave_nothing(vo_access: DevCloud, server: ListServer,
                                                                   tag: str, tmp_path: Path) -> None:
    wrong = payload("wrong")
    server.put("/evil.img", wrong)
    item = upload(tmp_path, payload("right"), server.url("/evil.img"), local=wrong)
    with pytest.raises(TargetError) as failed:
        driver(vo_access, tag, tmp_path, upload="web-download").add(item)
    assert "\n" not in failed.value.one_line() and "os_hash_value" in failed.value.one_line()
    assert server.hits("/evil.img") == 1
    assert vo_access.tagged(tag) == []


def test_stuck_import_times_out_is_deleted_and_uploaded_directly(vo_access: DevCloud, server: ListServer, tag: str,
                                                                 tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    server.put("/stuck.img", data := payload("stuck"))
    server.inject("/stuck.img", Fault.hang(8))
    item = upload(tmp_path, data, server.url("/stuck.img"))
    with caplog.at_level(logging.WARNING, logger=IMPORTING):
        image_id = driver(vo_access, tag, tmp_path, upload="web-download", import_timeout=2.0).add(item)
    assert "not active after 2s" in caplog.text
    held = vo_access.tagged(tag)
    assert [(i["id"], i["status"]) for i in held] == [(image_id, "active")]


def test_auto_pulls_a_plain_url_and_uploads_what_glance_cannot_fetch(vo_access: DevCloud, server: ListServer,
                                                                    tag: str, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    original, converted = payload("qcow2"), payload("raw", 128 * KIB)
    server.put("/plain.img", original)
    server.put("/converted.img", original)
    server.put("/oci.img", original)
    plain = upload(tmp_path, original, server.url("/plain.img"))
    listed = upload(tmp_path, original, server.url("/converted.img"))
    # What the executor hands over after converting: other bytes, their own sha512 and size.
    needs_conversion = replace(upload(tmp_path, converted, server.url("/converted.img")), desired=listed.desired)
    registry = upload(tmp_path, original, server.url("/oci.img"), sha256="ab" * 32)
    target = driver(vo_access, tag, tmp_path, upload="auto")
    with caplog.at_level(logging.INFO, logger=IMPORTING):
        ids = [target.add(item) for item in (plain, needs_conversion, registry)]
    assert [server.hits(p) for p in ("/plain.img", "/converted.img", "/oci.img")] == [1, 0, 0]
    hashes = {i["id"]: i["os_hash_value"] for i in vo_access.tagged(tag)}
    assert [hashes[i] for i in ids] == [plain.sha512, needs_conversion.sha512, registry.sha512]
    assert "converted before upload" in caplog.text and "OCI registry" in caplog.text


def test_glance_direct_stages_then_imports(vo_access: DevCloud, server: ListServer, tag: str, tmp_path: Path) -> None:
    item = upload(tmp_path, data := payload("staged"), server.url("/never-asked.img"))
    image_id = driver(vo_access, tag, tmp_path, upload="glance-direct").add(item)
    got = dict(vo_access.glance().images.get(image_id))
    assert (got["status"], got["os_hash_value"], got["size"]) == ("active", item.sha512, len(data))
    assert PENDING not in got and got["imagesync_image_id"] == item.desired.image.identifier
    assert server.hits("/never-asked.img") == 0


def test_an_image_left_pending_is_never_held_and_is_cleaned_up(vo_access: DevCloud, tag: str, tmp_path: Path) -> None:
    # A run killed after Glance finished the import but before imagesync checked it: active, tagged, pending.
    glance = vo_access.glance()
    image = glance.images.create(name="half", disk_format="raw", container_format="bare", tags=[tag],
                                 imagesync_image_id="half", imagesync_version="1", **{PENDING: "web-download"})
    glance.images.upload(image["id"], io.BytesIO(payload("half")), image_size=64 * KIB)
    assert glance.images.get(image["id"])["status"] == "active"
    target = driver(vo_access, tag, tmp_path)
    assert target.inventory() == []
    assert target.cleanup() == [image["id"]]
    assert vo_access.tagged(tag) == []


def test_after_two_failed_imports_in_a_row_the_rest_of_the_run_uploads_directly(
        vo_access: DevCloud, server: ListServer, tag: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Glance refusing every import (here: a store it lacks, as a wrong allowed-hosts setting would) costs two
    failed imports, not one per image. Before: all four imported, failed and uploaded (4 failures in the log)."""
    items = []
    for n in range(4):
        server.put(f"/many-{n}.img", data := payload(f"many {n}"))
        items.append(upload(tmp_path, data, server.url(f"/many-{n}.img")))
    pulling = driver(vo_access, tag, tmp_path, upload="web-download", stores=("nowhere",))
    with caplog.at_level(logging.INFO, logger=IMPORTING):
        ids = [pulling.add(item) for item in items]
    assert caplog.text.count("web-download import failed") == 2
    assert "2 imports failed in a row; uploading directly for the rest of this run" in caplog.text
    assert "direct upload for images where importing failed 2 times in a row this run" in caplog.text
    assert sorted(i["id"] for i in vo_access.tagged(tag)) == sorted(ids)
    assert all(i["status"] == "active" for i in vo_access.tagged(tag))
    # A new run (a new driver) tries importing again.
    assert driver(vo_access, tag, tmp_path, upload="web-download").pulls(items[0].desired, "raw")
