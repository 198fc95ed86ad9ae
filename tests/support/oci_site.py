"""A site subscribing to one repository of the real test registry (tests/support/oci_registry.py): pushes
artifacts with oras-py-compatible manifests, signs them in cosign's format, and writes the config. Shared by the
OCI integration tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagesync.config import settings as config
from imagesync.demo import cosign as cosign_sign
from imagesync.sources.oci.bundle import BUNDLE_MEDIA_TYPE
from imagesync.sources.oci.cosign import SIGNATURE_ARTIFACT_TYPE, signature_tag
from tests.support import oci_push
from tests.support.oci_registry import RegistryServer

EGI = {"eu.egi.cloud.tag": "2025-09-04-4d7122d6", "org.openstack.glance.os_distro": "ubuntu",
       "org.openstack.glance.os_version": "24.04", "org.openstack.glance.architecture": "x86_64",
       "org.openstack.glance.os_type": "linux", "org.openstack.glance.os_admin_user": "ubuntu",
       "org.openstack.glance.disk_format": "raw", "org.openstack.glance.container_format": "bare"}


@dataclass
class Site:
    """One site's view of the registry: its repository, its cosign key, its config."""

    root: Path
    server: RegistryServer
    repository: str
    key: cosign_sign.PrivateKey
    key_file: Path

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def config_file(self) -> Path:
        """Where :meth:`config` writes the settings (for the CLI)."""
        return self.root / "imagesync.yaml"

    def config(self, *, targets: dict[str, object] | None = None, **registry: object) -> config.Settings:
        """Settings following the site's repository (``registry`` overrides its keys; None drops one) into
        ``targets`` (default: a directory target, :attr:`archive`)."""
        assert self.server.login is not None
        entry: dict[str, object] = {
            "url": self.server.url, "repositories": [self.repository], "signature": "cosign",
            "cosign_keys": [str(self.key_file)], "username": self.server.login.username,
            "password": self.server.login.password, "vo": "demo.vo", **registry}
        entry = {key: value for key, value in entry.items() if value is not None}
        data = {"state_dir": str(self.root / "state"), "cache_dir": str(self.root / "cache"),
                "trust": {"ca_dir": str(self.server.ca_dir)},
                "download": {"retries": 1, "min_free_space": "1MiB", "allowed_networks": ["127.0.0.0/8"]},
                "targets": targets or {"archive": {"driver": "directory", "path": str(self.archive)}},
                "registries": {"reg": entry}}
        self.config_file.write_text(yaml.safe_dump(data))
        return config.load(self.config_file)

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
        if referrer:
            self._push_referrer(digest, made, SIGNATURE_ARTIFACT_TYPE)
            return
        for data in made.blobs.values():
            oci_push.push_blob(self.server, self.repository, data)
        oci_push.push_manifest(self.server, self.repository, signature_tag(digest), made.manifest)

    def sign_bundle(self, digest: str, key: cosign_sign.PrivateKey, *,
                    listed_as: str = BUNDLE_MEDIA_TYPE) -> None:
        """Sign ``digest`` the cosign 3 way: a Sigstore bundle referrer, and no `.sig` tag. ``listed_as`` is the
        artifactType the tag schema's index gives it (cosign 3.0.x wrote the empty config type there)."""
        subject = {"mediaType": oci_push.OCI_MANIFEST, "digest": digest, "size": 1}
        made = cosign_sign.bundle_referrer(cosign_sign.sigstore_bundle(key, cosign_sign.statement_for(digest)),
                                           subject)
        self._push_referrer(digest, made, listed_as)

    def _push_referrer(self, digest: str, made: cosign_sign.SignatureManifest, artifact_type: str) -> None:
        # docker-registry 2.8 has no referrers API: the OCI 1.1 tag schema's index points at the referrer, as
        # go-containerregistry (cosign's registry library) writes it there. One referrer per artifact here.
        for data in made.blobs.values():
            oci_push.push_blob(self.server, self.repository, data)
        index = {"schemaVersion": 2, "mediaType": oci_push.OCI_INDEX, "manifests": [
            {"mediaType": oci_push.OCI_MANIFEST, "digest": made.digest, "size": len(made.manifest),
             "artifactType": artifact_type}]}
        oci_push.push_manifest(self.server, self.repository, made.digest, made.manifest)
        oci_push.push_manifest(self.server, self.repository, digest.replace(":", "-"), index,
                               media_type=oci_push.OCI_INDEX)

    def held(self) -> list[Path]:
        return sorted(p for p in self.archive.rglob("*") if p.is_file() and p.suffix != ".json")


def new_site(root: Path, server: RegistryServer) -> Site:
    """A site in ``root`` with a fresh cosign key and a repository of its own on ``server``."""
    key = cosign_sign.new_private_key()
    key_file = root / "cosign.pub"
    key_file.write_bytes(cosign_sign.public_key_pem(key))
    return Site(root, server, f"vm/{uuid.uuid4().hex[:8]}", key, key_file)


def disk(text: bytes) -> bytes:
    """Bytes a raw disk image could hold (text alone is refused as "not a disk image")."""
    return b"\x00" * 4096 + text
