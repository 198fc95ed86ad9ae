"""Syncing from a real OCI registry (docker-registry 2.8 with htpasswd auth, TLS from a test CA) into a directory
target, through the whole pipeline: artifacts pushed by oras-py, signatures by our cosign-format signer (the real
cosign's own signatures are checked in tests/unit/test_cosign.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from imagesync.config import settings as config
from imagesync.demo import cosign as cosign_sign
from imagesync.errors import EXIT_OK, EXIT_PARTIAL
from imagesync.run.pipeline import SyncResult, sync
from imagesync.sources.oci.cosign import signature_tag
from tests.support import oci_push
from tests.support.oci_registry import Registries, RegistryServer

EGI = {"eu.egi.cloud.tag": "2025-09-04-4d7122d6", "org.openstack.glance.os_distro": "ubuntu",
       "org.openstack.glance.os_version": "24.04", "org.openstack.glance.architecture": "x86_64",
       "org.openstack.glance.os_type": "linux", "org.openstack.glance.os_admin_user": "ubuntu",
       "org.openstack.glance.disk_format": "raw", "org.openstack.glance.container_format": "bare"}


@dataclass
class Site:
    root: Path
    server: RegistryServer
    repository: str
    key: cosign_sign.PrivateKey
    key_file: Path

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def config(self, **registry: object) -> config.Settings:
        assert self.server.login is not None
        entry: dict[str, object] = {
            "url": self.server.url, "repositories": [self.repository], "signature": "cosign",
            "cosign_keys": [str(self.key_file)], "username": self.server.login.username,
            "password": self.server.login.password, "vo": "demo.vo", **registry}
        entry = {key: value for key, value in entry.items() if value is not None}
        data = {"state_dir": str(self.root / "state"), "cache_dir": str(self.root / "cache"),
                "trust": {"ca_dir": str(self.server.ca_dir)},
                "download": {"retries": 1, "min_free_space": "1MiB", "allowed_networks": ["127.0.0.0/8"]},
                "targets": {"archive": {"driver": "directory", "path": str(self.archive)}},
                "registries": {"reg": entry}}
        path = self.root / "imagesync.yaml"
        path.write_text(yaml.safe_dump(data))
        return config.load(path)

    def push(self, tag: str, data: bytes, *, sign: bool = True,
             annotations: dict[str, str] | None = None) -> oci_push.Pushed:
        pushed = oci_push.push_artifact(self.server, self.repository, tag, data,
                                        annotations=EGI if annotations is None else annotations)
        if sign:
            self.sign(pushed.digest, self.key)
        return pushed

    def sign(self, digest: str, key: cosign_sign.PrivateKey, *, referrer: bool = False) -> None:
        layer = cosign_sign.signature_layer(key, digest)
        subject = {"mediaType": oci_push.OCI_MANIFEST, "digest": digest, "size": 1} if referrer else None
        made = cosign_sign.sig_manifest([layer], subject=subject)
        for data in made.blobs.values():
            oci_push.push_blob(self.server, self.repository, data)
        if not referrer:
            oci_push.push_manifest(self.server, self.repository, signature_tag(digest), made.manifest)
            return
        # docker-registry 2.8 has no referrers API: the OCI 1.1 tag schema's index points at the signature.
        index = {"schemaVersion": 2, "mediaType": oci_push.OCI_INDEX, "manifests": [
            {"mediaType": oci_push.OCI_MANIFEST, "digest": made.digest, "size": len(made.manifest),
             "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"}]}
        oci_push.push_manifest(self.server, self.repository, made.digest, made.manifest)
        oci_push.push_manifest(self.server, self.repository, digest.replace(":", "-"), index,
                               media_type=oci_push.OCI_INDEX)

    def held(self) -> list[Path]:
        return sorted(p for p in self.archive.rglob("*") if p.is_file() and p.suffix != ".json")


@pytest.fixture
def site(tmp_path: Path, oci_registries: Registries) -> Site:
    key = cosign_sign.new_private_key()
    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(cosign_sign.public_key_pem(key))
    return Site(tmp_path, oci_registries.get("htpasswd"), f"vm/{uuid.uuid4().hex[:8]}", key, key_file)


def disk(text: bytes) -> bytes:
    """Bytes a raw disk image could hold (text alone is refused as "not a disk image")."""
    return b"\x00" * 4096 + text


def kinds(result: SyncResult) -> list[tuple[str, str]]:
    return sorted((r.action.kind, r.status) for r in result.results)


def test_first_sync_then_a_noop_that_downloads_nothing(site: Site) -> None:
    data = disk(b"disk one")
    site.push("24.04", data)
    settings = site.config()
    first = sync(settings, dry_run=False)
    assert first.exit_code == EXIT_OK, [r.error for r in first.results] + [o.error for o in first.lists]
    assert kinds(first) == [("add", "done")]
    [held] = site.held()
    assert held.read_bytes() == data
    again = sync(settings, dry_run=False)
    assert again.exit_code == EXIT_OK
    assert kinds(again) == [("keep", "done")] and again.bytes_downloaded == 0
    assert [o.status for o in again.lists] == ["unchanged"]


def test_a_repushed_floating_tag_is_a_new_version_and_the_old_one_retires_after(site: Site) -> None:
    site.push("24.04", disk(b"build one"))
    settings = site.config()
    assert sync(settings, dry_run=False).exit_code == EXIT_OK
    site.push("24.04", disk(b"build two"))
    result = sync(settings, dry_run=False)
    assert result.exit_code == EXIT_OK
    [update] = [r for r in result.results if r.action.kind == "update"]
    assert update.status == "done" and update.action.supersedes


def test_a_deleted_tag_retires_its_image(site: Site) -> None:
    site.push("24.04", disk(b"keep me"))
    site.push("22.04", disk(b"drop me"))
    settings = site.config()
    assert kinds(sync(settings, dry_run=False)) == [("add", "done"), ("add", "done")]
    oci_push.delete_manifest(site.server, site.repository, "22.04")
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("keep", "done"), ("retire", "done")]


def test_a_registry_that_is_down_retires_nothing(site: Site) -> None:
    site.push("24.04", disk(b"still here"))
    assert sync(site.config(), dry_run=False).exit_code == EXIT_OK
    down = site.config(url="https://127.0.0.1:9")  # nothing listens on the discard port
    result = sync(down, dry_run=False)
    assert result.exit_code != EXIT_OK
    [outcome] = result.lists
    assert outcome.status == "failed" and "registry 127.0.0.1:9" in (outcome.error or "")
    assert kinds(result) == [("keep", "done")]
    assert len(site.held()) == 1


def test_wrong_blob_bytes_are_refused(site: Site) -> None:
    data = disk(b"the real bytes")
    pushed = site.push("24.04", data)
    site.server.tamper_blob(pushed.layer_digest, b"real", b"fake")
    result = sync(site.config(), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    [add] = result.results
    assert add.status == "failed" and "checksum mismatch" in (add.error or "")
    assert site.held() == []


def test_unsigned_or_wrongly_signed_artifacts_are_refused_and_kept_out(site: Site) -> None:
    site.push("unsigned", disk(b"nobody signed me"), sign=False)
    stranger = cosign_sign.new_private_key()
    wrong = site.push("wrong", disk(b"a stranger signed me"), sign=False)
    site.sign(wrong.digest, stranger)
    site.push("good", disk(b"signed by our key"))
    result = sync(site.config(), dry_run=False)
    assert result.exit_code == EXIT_PARTIAL
    [outcome] = result.lists
    assert len(outcome.problems) == 2 and all("signature" in p for p in outcome.problems), outcome.problems
    assert [r.action.identifier.rsplit(":", 1)[1] for r in result.results] == ["good"]
    assert len(site.held()) == 1


def test_a_signature_found_through_the_referrers_tag_schema_is_accepted(site: Site) -> None:
    pushed = site.push("24.04", disk(b"signed the OCI 1.1 way"), sign=False)
    site.sign(pushed.digest, site.key, referrer=True)
    result = sync(site.config(), dry_run=False)
    assert kinds(result) == [("add", "done")], result.lists[0].problems


def test_signature_none_syncs_unsigned_and_says_so(site: Site) -> None:
    site.push("24.04", disk(b"unsigned on purpose"), sign=False)
    settings = site.config(signature="none", cosign_keys=None)
    result = sync(settings, dry_run=False)
    assert kinds(result) == [("add", "done")]
    assert result.lists[0].accepted is not None and result.lists[0].accepted.unsigned


def test_artifacts_without_the_required_annotation_are_skipped_with_a_note(site: Site) -> None:
    site.push("24.04", disk(b"no egi tag"), annotations={"org.openstack.glance.disk_format": "raw"})
    result = sync(site.config(required_annotation="eu.egi.cloud.tag"), dry_run=False)
    assert result.results == []
    assert any("no eu.egi.cloud.tag annotation" in note for note in result.plan.notes)
