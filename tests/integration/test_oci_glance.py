"""An EGI-shaped OCI artifact from a real registry into the real dev cloud's Glance: what the EGI consumers read.

The artifact is laid out as EGI's publisher (fedcloud-vmi-templates, ``oras push --annotation-file``) makes it: one
``application/x-qemu-disk`` layer holding a real qcow2, the EGI annotations on that LAYER, the commit and source on the
manifest, the empty config, two tags (``<os_version>-<date>-<sha8>`` and the floating ``<os_version>``). It is signed
with the legacy ``.sig`` tag (our cosign-format signer). The manifest is built by hand and pushed blob by blob so the
annotations sit where EGI's land, which oras-py's ``push`` cannot do for a layer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo import cosign as cosign_sign
from imagesync.demo.world import DemoImage, as_qcow2
from imagesync.errors import EXIT_OK
from imagesync.run.pipeline import SyncResult, sync
from imagesync.sources.oci.cosign import signature_tag
from tests.devcloud.fixture import DevCloud
from tests.support import oci_push
from tests.support.glance_proxy import GlanceProxy
from tests.support.oci_registry import Registries, RegistryServer

EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                "digest": oci_push.sha256(b"{}")}
SOURCE = "https://github.com/EGI-Federation/fedcloud-vmi-templates"


def layer_annotations(build: str) -> dict[str, str]:
    """What EGI's annotation file puts on the qcow2 layer (plus the title oras adds)."""
    return {"org.openstack.glance.os_distro": "ubuntu", "org.openstack.glance.os_admin_user": "ubuntu",
            "org.openstack.glance.os_version": "24.04", "org.openstack.glance.os_type": "linux",
            "org.openstack.glance.architecture": "x86_64", "org.openstack.glance.disk_format": "qcow2",
            "org.openstack.glance.container_format": "bare", "eu.egi.cloud.description": "EGI Ubuntu 24.04 image",
            "eu.egi.cloud.tag": build, "org.opencontainers.image.title": f"Ubuntu.24.04-{build}.qcow2"}


@dataclass(frozen=True)
class Build:
    build: str  # EGI's IMAGE_TAG, <date>-<sha8>
    data: bytes  # the qcow2
    digest: str  # the manifest digest
    annotations: dict[str, str]  # every annotation, manifest's and layer's


@dataclass
class Env:
    cloud: DevCloud
    server: RegistryServer
    proxy: GlanceProxy
    repository: str
    key: cosign_sign.PrivateKey
    tag: str
    settings: config.Settings
    workdir: Path

    def push(self, build: str) -> Build:
        """Push one EGI build under its unique tag and the floating ``24.04``, and sign it."""
        seed = hashlib.sha256(build.encode()).digest()
        qcow2 = as_qcow2(DemoImage("ubuntu", build, "Ubuntu", seed * 2048), self.workdir).data
        layer = layer_annotations(build)
        manifest_notes = {"org.opencontainers.image.revision": hashlib.sha1(seed).hexdigest(),
                          "org.opencontainers.image.source": SOURCE,
                          "org.opencontainers.image.created": "2025-10-07T10:00:00Z"}
        manifest = {"schemaVersion": 2, "mediaType": oci_push.OCI_MANIFEST,
                    "artifactType": "application/vnd.unknown.artifact.v1", "config": EMPTY_CONFIG,
                    "layers": [{"mediaType": oci_push.QCOW2, "digest": oci_push.sha256(qcow2), "size": len(qcow2),
                                "annotations": layer}],
                    "annotations": manifest_notes}
        oci_push.push_blob(self.server, self.repository, b"{}")
        oci_push.push_blob(self.server, self.repository, qcow2)
        body = json.dumps(manifest, separators=(",", ":")).encode()
        for tag in (f"24.04-{build}", "24.04"):
            digest = oci_push.push_manifest(self.server, self.repository, tag, body)
        self._sign(digest)
        return Build(build, qcow2, digest, {**manifest_notes, **layer})

    def _sign(self, digest: str) -> None:
        made = cosign_sign.sig_manifest([cosign_sign.signature_layer(self.key, digest)])
        for data in made.blobs.values():
            oci_push.push_blob(self.server, self.repository, data)
        oci_push.push_manifest(self.server, self.repository, signature_tag(digest), made.manifest)

    def images(self) -> dict[str, Any]:
        """Every Glance image with this test's tag (hidden ones too), by imagesync_version (the manifest digest)."""
        return {i["imagesync_version"]: i for i in self.cloud.tagged(self.tag, hidden=True)}


@pytest.fixture
def env(vo_access: DevCloud, oci_registries: Registries, tmp_path: Path) -> Iterator[Env]:
    cloud, server = vo_access, oci_registries.get("htpasswd")
    assert server.login is not None
    key = cosign_sign.new_private_key()
    (tmp_path / "cosign.pub").write_bytes(cosign_sign.public_key_pem(key))
    (tmp_path / "password").write_text(cloud.user.password)
    (tmp_path / "mapping.json").write_text(json.dumps({"demo.vo": {"project": "vo-alpha", "domain": "Default"}}))
    repository, tag = f"egi_vm_images/ubuntu{uuid.uuid4().hex[:8]}", f"imagesync-{uuid.uuid4().hex[:8]}"
    with GlanceProxy(cloud.glance_url) as proxy:
        target = {"driver": "glance", "region": cloud.region, "visibility": "shared", "tag": tag,
                  "projects_file": str(tmp_path / "mapping.json"), "retire": {"mode": "deactivate"},
                  "endpoint": proxy.url, "auth": cloud.password_auth(password_file=tmp_path / "password")}
        registry = {"url": server.url, "repositories": [repository], "tag_pattern": "^[^-]*$",
                    "required_annotation": "eu.egi.cloud.tag", "signature": "cosign",
                    "cosign_keys": [str(tmp_path / "cosign.pub")], "username": server.login.username,
                    "password": server.login.password, "vo": "demo.vo"}
        data = {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache"),
                "trust": {"ca_dir": str(server.ca_dir)},
                "download": {"retries": 1, "min_free_space": "1MiB", "allowed_networks": ["127.0.0.0/8"]},
                "targets": {"cloud": target}, "registries": {"egi": registry}}
        (tmp_path / "imagesync.yaml").write_text(yaml.safe_dump(data))
        env = Env(cloud, server, proxy, repository, key, tag, config.load(tmp_path / "imagesync.yaml"), tmp_path)
        try:
            yield env
        finally:
            glance = cloud.glance()
            for image in env.images().values():
                glance.images.update(image["id"], protected=False)
                glance.images.delete(image["id"])


def kinds(result: SyncResult) -> list[tuple[str, str]]:
    return [(r.action.kind, r.status) for r in result.results]


def problems(result: SyncResult) -> list[str | None]:
    return [r.error for r in result.results] + [o.error for o in result.lists] + [
        p for o in result.lists for p in o.problems]


def test_an_egi_artifact_lands_in_glance_with_the_properties_egi_consumers_read(env: Env) -> None:
    one = env.push("2025-10-07-fc45d0d3")
    result = sync(env.settings, dry_run=False)
    assert result.exit_code == EXIT_OK, problems(result)
    assert kinds(result) == [("add", "done")]  # the unique tag is not followed: only the floating one
    [image] = env.images().values()
    host, sha512 = env.server.host, hashlib.sha512(one.data).hexdigest()
    assert image["status"] == "active" and image["visibility"] == "shared"
    assert image["vmcatcher_event_ad_mpuri"] == f"{host}/{env.repository}:24.04-{one.digest}"
    attributes = json.loads(image["APPLIANCE_ATTRIBUTES"])
    assert attributes == {**one.annotations, "eu.egi.cloud.image_ref": f"{env.repository}:24.04"}
    assert attributes["eu.egi.cloud.tag"] == one.build
    assert {k: image.get(k) for k in ("os_distro", "os_version", "architecture", "os_type", "os_admin_user")} == {
        "os_distro": "ubuntu", "os_version": "24.04", "architecture": "x86_64", "os_type": "linux",
        "os_admin_user": "ubuntu"}
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "bare")
    assert image["imagesync_list"] == "egi"
    assert image["imagesync_image_id"] == f"{host}/{env.repository}:24.04"
    assert image["imagesync_version"] == one.digest
    assert image["imagesync_sha512"] == sha512
    assert (image["os_hash_algo"], image["os_hash_value"]) == ("sha512", sha512)
    assert image["vmcatcher_event_dc_description"] == "EGI Ubuntu 24.04 image" and image["ad_vo"] == "demo.vo"
    glance = env.cloud.glance()
    members = {(m["member_id"], m["status"]) for m in glance.image_members.list(image["id"])}
    assert members == {(env.cloud.vo_projects["vo-alpha"], "accepted")}
    alpha = env.cloud.glance(env.cloud.vo_users["vo-alpha"])
    assert b"".join(alpha.images.data(image["id"])) == one.data


def test_a_noop_rerun_downloads_nothing_and_keeps_the_image(env: Env) -> None:
    env.push("2025-10-07-fc45d0d3")
    assert sync(env.settings, dry_run=False).exit_code == EXIT_OK
    before = env.images()
    again = sync(env.settings, dry_run=False)
    assert again.exit_code == EXIT_OK, problems(again)
    assert kinds(again) == [("keep", "done")] and again.bytes_downloaded == 0
    assert [o.status for o in again.lists] == ["unchanged"]
    assert {k: v["id"] for k, v in env.images().items()} == {k: v["id"] for k, v in before.items()}


def test_a_repushed_floating_tag_is_active_before_the_old_build_is_deactivated(env: Env) -> None:
    one = env.push("2025-10-07-fc45d0d3")
    assert sync(env.settings, dry_run=False).exit_code == EXIT_OK
    old_id = env.images()[one.digest]["id"]
    two = env.push("2025-11-02-0a1b2c3d")
    mark = len(env.proxy.requests)
    result = sync(env.settings, dry_run=False)
    assert result.exit_code == EXIT_OK, problems(result)
    [update] = result.results
    assert (update.action.kind, update.status) == ("update", "done") and update.action.supersedes
    held = env.images()
    new = held[two.digest]
    assert new["status"] == "active" and new["os_hash_value"] == hashlib.sha512(two.data).hexdigest()
    assert json.loads(new["APPLIANCE_ATTRIBUTES"])["eu.egi.cloud.tag"] == two.build
    assert (held[one.digest]["id"], held[one.digest]["status"]) == (old_id, "deactivated")
    # The order Glance saw: the new build's bytes in and the image shared, then the old one deactivated.
    seen = [(s.method, s.path) for s in env.proxy.requests[mark:] if s.status < 300]
    upload = next(i for i, (m, p) in enumerate(seen) if m == "PUT" and p == f"/v2/images/{new['id']}/file")
    deactivate = seen.index(("POST", f"/v2/images/{old_id}/actions/deactivate"))
    assert upload < deactivate, seen
