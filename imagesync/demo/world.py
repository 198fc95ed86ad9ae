"""A self-contained little world for the demo and the tests: an ephemeral CA and list signer, an IGTF CA
directory, a signed HEPiX list with real image bytes, served over HTTPS on 127.0.0.1, and a config file."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.server import ListServer
from imagesync.images.convert import ConversionError, qemu_img_available
from imagesync.sources.hepix import dn

LIST_PATH = "/store/vo/demo.vo/image.list"
VO = "demo.vo"


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]) for oid, value in pairs])


@dataclass(frozen=True)
class DemoImage:
    identifier: str
    version: str
    title: str
    data: bytes
    vo: str = VO
    format: str = "RAW"  # hv:format; the bytes must be what it says

    @property
    def path(self) -> str:
        """Where the server serves the bytes; quoted, so tests may give images hostile identifiers."""
        return f"/images/{quote(self.identifier, safe='')}-{quote(self.version, safe='')}.img"

    def entry(self, base_url: str) -> dict[str, object]:
        return {"hv:image": {
            "dc:identifier": self.identifier, "dc:title": self.title, "hv:version": self.version,
            "dc:description": f"{self.title}, a tiny demo image", "ad:vo": self.vo,
            "hv:uri": f"{base_url}{self.path}",
            "sl:checksum:sha512": hashlib.sha512(self.data).hexdigest(), "hv:size": str(len(self.data)),
            "hv:format": self.format, "sl:arch": "x86_64", "sl:osname": "DemoOS", "sl:osversion": "1",
            "hv:ram_minimum": "512", "hv:core_minimum": "1",
            "ad:mpuri": f"https://appdb.demo.invalid/store/vm/image/{self.identifier}:{self.version}/",
        }}


@dataclass
class DemoWorld:
    """Owns the server thread: use as a context manager."""

    root: Path
    ca: pki.Credential
    signer: pki.Credential
    server: ListServer
    token: str = field(repr=False)
    ca_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ca_dir = pki.write_ca_dir(self.root / "certificates", [self.ca], [pki.make_crl(self.ca, [])])

    @property
    def list_url(self) -> str:
        return self.server.url(LIST_PATH)

    def publish(self, images: list[DemoImage], *, created: datetime | None = None,
                fields: Mapping[str, object] | None = None) -> bytes:
        """Serve the images and a freshly signed list naming them (list-level ``fields`` override ours); return
        the signed list."""
        for image in images:
            self.server.put(image.path, image.data)
        base = self.server.url("").rstrip("/")
        when = (created or datetime.now(UTC)).replace(microsecond=0)
        body = {"hv:imagelist": {
            "dc:identifier": "5e7a1c0d-demo-4b6e-9f00-000000000001", "dc:title": "imagesync demo list",
            "dc:date:created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dc:date:expires": (when + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ad:vo": VO, "hv:version": when.strftime("%Y%m%d%H%M%S"),
            "hv:endorser": {"hv:x509": {"hv:dn": dn.render(self.signer.cert.subject),
                                        "hv:ca": dn.render(self.signer.cert.issuer), "dc:creator": "imagesync demo"}},
            "hv:images": [image.entry(base) for image in images],
            **(fields or {}),
        }}
        signed = pki.sign_smime(json.dumps(body, indent=2).encode(), self.signer)
        self.server.put(LIST_PATH, signed)
        return signed

    def write_config(self, extra: dict[str, object] | None = None) -> Path:
        """A config subscribing to the demo list (token in a 0600 file, endorser pinned)."""
        token_file = self.root / "token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        data: dict[str, object] = {
            "state_dir": str(self.root / "state"), "cache_dir": str(self.root / "cache"),
            "trust": {"ca_dir": str(self.ca_dir), "crl": "require"},
            # The images are served on 127.0.0.1, which downloads refuse unless allowed (DESIGN §9).
            "download": {"retries": 1, "min_free_space": "1MiB", "allowed_networks": ["127.0.0.0/8"]},
            "lists": {"demo": {"url": self.list_url, "token_file": str(token_file), "endorser": {
                "dn": dn.render(self.signer.cert.subject), "ca": dn.render(self.signer.cert.issuer)}}},
            **(extra or {}),
        }
        path = self.root / "imagesync.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.server.stop()


def build(root: Path, *, ca_subject: x509.Name | None = None, signer_subject: x509.Name | None = None) -> DemoWorld:
    """Make the PKI (the demo's names unless given), start the HTTPS server (token-protected list path) and return
    the world."""
    ca = pki.make_ca(ca_subject or _name(
        (NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "imagesync-demo"),
        (NameOID.COMMON_NAME, "imagesync Demo CA")))
    signer = pki.make_leaf(ca, signer_subject or _name(
        (NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "imagesync-demo"),
        (NameOID.ORGANIZATION_NAME, "Hosts"), (NameOID.COMMON_NAME, "lists.demo.invalid")))
    tls = pki.make_server_credential(ca)
    server = ListServer(tls.cert_pem, tls.key_pem).start()
    token = secrets.token_urlsafe(24)
    server.require_token("/store/vo/", token)
    return DemoWorld(root=root, ca=ca, signer=signer, server=server, token=token)


def demo_images(version: str = "1.0") -> list[DemoImage]:
    """Two tiny raw disks with distinct, deterministic content."""
    return [DemoImage(identifier=f"demo-{name}", version=version, title=f"Demo {name.title()}",
                      data=_raw_disk(name, version)) for name in ("alpine", "debian")]


def _raw_disk(name: str, version: str) -> bytes:
    return hashlib.sha256(f"{name}-{version}".encode()).digest() * 2048


def as_qcow2(image: DemoImage, workdir: Path) -> DemoImage:
    """The same disk as a real qcow2 made by qemu-img. Raises ConversionError when qemu-img is missing."""
    qemu = qemu_img_available()
    if qemu is None:
        raise ConversionError("qemu-img not found", subject="demo", hint="install qemu-utils (Debian) or qemu-img")
    raw, out = workdir / f"{image.identifier}.raw", workdir / f"{image.identifier}.qcow2"
    raw.write_bytes(image.data)
    subprocess.run([qemu, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True)
    return DemoImage(identifier=image.identifier, version=image.version, title=image.title, data=out.read_bytes(),
                     vo=image.vo, format="QCOW2")
