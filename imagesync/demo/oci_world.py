"""The OCI demo's little world: Debian's docker-registry on 127.0.0.1 with TLS from the demo's throwaway CA, signed
single-layer disk-image artifacts with EGI-like annotations, and a config following them.

No auth on the registry, on purpose: an htpasswd file needs a bcrypt hash, which nothing imagesync depends on at run
time can make, and the registry lives only for the demo, on 127.0.0.1. The tests cover Basic and Bearer auth.
Pushing is plain ``requests`` against the distribution API (the same calls ``oras push`` makes), so the demo needs
no OCI client; signatures are made by :mod:`imagesync.demo.cosign` in cosign's format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urljoin

import requests
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import cosign, pki
from imagesync.demo.registry import DockerRegistry
from imagesync.demo.world import VO, DemoImage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
QEMU_DISK = "application/x-qemu-disk"  # the layer media type EGI publishes
REGISTRY_NAME = "demo"
_TIMEOUT = 30.0


class PushError(RuntimeError):
    """The demo's registry refused a push (the status line and the start of its answer)."""


@dataclass(frozen=True)
class Pushed:
    """An artifact as pushed: ``repository:tag`` and its manifest digest (the image's version)."""

    reference: str
    digest: str


@dataclass
class OciWorld:
    """Owns the registry process: use as a context manager (stopping it leaves no process)."""

    root: Path
    registry: DockerRegistry
    ca_dir: Path
    key: cosign.PrivateKey

    def push(self, repository: str, tag: str, image: DemoImage, *, signed: bool = True) -> Pushed:
        """Push ``image`` as a single-layer artifact ``repository:tag`` with EGI-like annotations, and its cosign
        signature unless ``signed`` is False. Raises PushError, requests.RequestException."""
        config = self._blob(repository, b"{}")
        layer = self._blob(repository, image.data)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2},
                    "layers": [{"mediaType": QEMU_DISK, "digest": layer, "size": len(image.data),
                                "annotations": {"org.opencontainers.image.title": f"{image.identifier}.img"}}],
                    "annotations": _egi_annotations(image, tag)}
        digest = self._manifest(repository, tag, json.dumps(manifest).encode(), OCI_MANIFEST)
        if signed:
            self._sign(repository, digest)
        return Pushed(f"{repository}:{tag}", digest)

    def write_config(self, repositories: list[str], target: dict[str, object]) -> Path:
        """A config following ``repositories`` (cosign-verified, demo CA trusted) into the ``archive`` target."""
        key_file = self.root / "cosign.pub"
        key_file.write_bytes(cosign.public_key_pem(self.key))
        data = {
            "state_dir": str(self.root / "state"), "cache_dir": str(self.root / "cache"),
            "trust": {"ca_dir": str(self.ca_dir), "crl": "require"},
            # The registry is on 127.0.0.1, which downloads refuse unless allowed (DESIGN §9).
            "download": {"retries": 1, "min_free_space": "1MiB", "allowed_networks": ["127.0.0.0/8"]},
            "registries": {REGISTRY_NAME: {
                "url": self.registry.url, "repositories": repositories, "signature": "cosign",
                "cosign_keys": [str(key_file)], "required_annotation": "eu.egi.cloud.tag", "vo": VO}},
            "targets": {"archive": target},
        }
        path = self.root / "imagesync.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _sign(self, repository: str, digest: str) -> None:
        reference = f"{self.registry.host}/{repository}"
        made = cosign.sig_manifest([cosign.signature_layer(self.key, digest, payload=cosign.payload_for(
            digest, reference))])
        for data in made.blobs.values():
            self._blob(repository, data)
        # cosign's legacy tag scheme, which every registry serves: sha256-<hex>.sig
        self._manifest(repository, digest.replace(":", "-") + ".sig", made.manifest, OCI_MANIFEST)

    def _blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        base = f"{self.registry.url}/v2/{repository}/blobs/"
        started = self._call("POST", base + "uploads/", expect=202)
        location = urljoin(base, started.headers["Location"])
        separator = "&" if "?" in location else "?"
        self._call("PUT", f"{location}{separator}digest={digest}", expect=201, data=data,
                   headers={"Content-Type": "application/octet-stream"})
        return digest

    def _manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        url = f"{self.registry.url}/v2/{repository}/manifests/{reference}"
        self._call("PUT", url, expect=201, data=body, headers={"Content-Type": media_type})
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _call(self, method: str, url: str, *, expect: int, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> requests.Response:
        response = requests.request(method, url, data=data, headers=headers, verify=str(self.registry.ca_file),
                                    timeout=_TIMEOUT)
        if response.status_code != expect:
            raise PushError(f"{method} {url}: {response.status_code} {response.text[:200]}")
        return response

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.registry.stop()


def build(root: Path) -> OciWorld:
    """Make the CA (with an empty CRL) and the registry's certificate, start the registry with its storage under
    ``root`` and return the world. Raises RegistryUnavailable when docker-registry is missing or fails."""
    ca = pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagesync Demo Registry CA")]))
    ca_dir = pki.write_ca_dir(root / "certificates", [ca], [pki.make_crl(ca, [])])
    tls = pki.make_server_credential(ca)
    key = cosign.new_private_key()
    registry = DockerRegistry(root / "registry", cert_pem=tls.cert_pem, key_pem=tls.key_pem, ca_pem=ca.cert_pem)
    return OciWorld(root=root, registry=registry.start(), ca_dir=ca_dir, key=key)


def _egi_annotations(image: DemoImage, tag: str) -> dict[str, str]:
    # What EGI's publishing pipeline writes (eu.egi.cloud.tag is what its sync requires; the glance ones become
    # Glance fields); eu.egi.cloud.tag names the build, so a re-pushed floating tag carries a new one.
    return {"eu.egi.cloud.tag": f"{tag}-{image.version}", "eu.egi.cloud.image.title": image.title,
            "eu.egi.cloud.description": f"{image.title}, a tiny demo image",
            "org.openstack.glance.os_distro": image.identifier.removeprefix("demo-"),
            "org.openstack.glance.os_version": tag, "org.openstack.glance.architecture": "x86_64",
            "org.openstack.glance.os_type": "linux", "org.openstack.glance.disk_format": image.format.lower(),
            "org.openstack.glance.container_format": "bare"}
