"""The publishing side of the benchmarks: a grid CA directory, a list signer, HEPiX lists signed as AppDB writes them
(every field atrope insists on as well), and the demo's HTTPS ListServer on 127.0.0.1 counting the image bytes it
serves.

Built from the demo's own pieces (imagesync.demo.pki for the CA, CRL, signer and S/MIME signature, and
imagesync.demo.server.ListServer, which sets TCP_NODELAY on every connection so small responses do not wait ~40 ms
on Nagle's algorithm and the client's delayed ACK).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.handler import _Resource
from imagesync.demo.server import ListServer
from imagesync.sources.hepix import dn

IMAGE_PREFIX = "/images/"
VO = "bench.vo"


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]) for oid, value in pairs])


@dataclass(frozen=True)
class _Counted(_Resource):
    """A served resource that reports every block it hands to the handler (HEAD and 304 send none)."""

    count: CountingServer | None = None

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        for block in super().chunks(start, end):
            if self.count is not None:
                self.count.add_image_bytes(len(block))
            yield block


class CountingServer(ListServer):
    """The demo ListServer, counting the bytes of every image body it sends (paths under /images/)."""

    def __init__(self, cert_pem: bytes = b"", key_pem: bytes = b"", *, tls: bool = True) -> None:
        super().__init__(cert_pem, key_pem, tls=tls)
        self._count_lock = threading.Lock()
        self._image_bytes = 0

    def add_image_bytes(self, n: int) -> None:
        with self._count_lock:
            self._image_bytes += n

    @property
    def image_bytes(self) -> int:
        """Image bytes served since the server started."""
        with self._count_lock:
            return self._image_bytes

    def resource(self, path: str) -> _Resource | None:
        found = super().resource(path)
        if found is None or not path.startswith(IMAGE_PREFIX):
            return found
        return _Counted(data=found.data, file=found.file, put_at=found.put_at, count=self)


@dataclass(frozen=True)
class Listed:
    """One image as a list names it."""

    identifier: str
    version: str
    sha512: str
    size: int
    title: str = ""
    vo: str = VO

    @property
    def path(self) -> str:
        return f"{IMAGE_PREFIX}{self.identifier}-{self.version}.img"


@dataclass
class Publisher:
    """PKI, CA directory and HTTPS server of one benchmark run. Use as a context manager (it owns the server)."""

    root: Path
    ca: pki.Credential = field(init=False)
    signer: pki.Credential = field(init=False)
    server: CountingServer = field(init=False)
    token: str = field(init=False, repr=False)
    ca_dir: Path = field(init=False)
    ca_pem: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ca = pki.make_ca(_name((NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "imagesync-bench"),
                                    (NameOID.COMMON_NAME, "imagesync Bench CA")))
        self.signer = pki.make_leaf(self.ca, _name(
            (NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "imagesync-bench"),
            (NameOID.ORGANIZATION_NAME, "Hosts"), (NameOID.COMMON_NAME, "lists.bench.invalid")))
        self.ca_dir = pki.write_ca_dir(self.root / "certificates", [self.ca], [pki.make_crl(self.ca, [])])
        # IGTF distributions carry each CA as <alias>.pem too; atrope builds its download CA bundle from those.
        self.ca_pem = self.ca_dir / "imagesync-bench-ca.pem"
        self.ca_pem.write_bytes(self.ca.cert_pem)
        tls = pki.make_server_credential(self.ca)
        self.server = CountingServer(tls.cert_pem, tls.key_pem).start()
        self.token = secrets.token_urlsafe(24)
        self.server.require_token("/store/", self.token)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def endorser(self) -> dict[str, str]:
        """The endorser (dn, ca) to configure, in the OpenSSL one-line form both tools compare."""
        return {"dn": dn.render(self.signer.cert.subject), "ca": dn.render(self.signer.cert.issuer)}

    def url(self, path: str) -> str:
        return self.server.url(path)

    def serve_file(self, image: Listed, file: Path) -> None:
        self.server.put_file(image.path, file)

    def serve_bytes(self, image: Listed, data: bytes) -> None:
        self.server.put(image.path, data)

    def publish(self, list_path: str, identifier: str, images: Sequence[Listed], created: datetime) -> bytes:
        """Sign a list of ``images`` created at ``created`` and serve it at ``list_path``; return the signed bytes."""
        signed = pki.sign_smime(json.dumps(self.body(list_path, identifier, images, created), indent=1).encode(),
                                self.signer)
        self.server.put(list_path, signed)
        return signed

    def body(self, list_path: str, identifier: str, images: Sequence[Listed], created: datetime) -> dict[str, object]:
        when = created.astimezone(UTC).replace(microsecond=0)
        return {"hv:imagelist": {
            "dc:identifier": identifier, "dc:title": f"bench list {identifier}",
            "dc:description": "images for the imagesync benchmarks", "dc:source": "https://appdb.bench.invalid/",
            "dc:date:created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dc:date:expires": (when + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hv:version": when.strftime("%Y%m%d%H%M%S"), "hv:uri": self.url(list_path), "ad:vo": VO,
            "hv:endorser": {"hv:x509": {"dc:creator": "imagesync bench", "hv:email": "bench@lists.bench.invalid",
                                        **{f"hv:{k}": v for k, v in self.endorser.items()}}},
            "hv:images": [self.entry(image) for image in images],
        }}

    def entry(self, image: Listed) -> dict[str, object]:
        """A raw image described with every field AppDB writes (atrope refuses a list missing any of them)."""
        title = image.title or image.identifier
        return {"hv:image": {
            "dc:identifier": image.identifier, "dc:title": title, "dc:description": f"{title}, a benchmark image",
            "hv:version": image.version, "hv:uri": self.url(image.path), "hv:size": str(image.size),
            "sl:checksum:sha512": image.sha512, "hv:format": "raw", "hv:hypervisor": "QEMU,KVM",
            "sl:arch": "x86_64", "sl:os": "Linux", "sl:osname": "BenchOS", "sl:osversion": "1", "sl:comments": "",
            "ad:vo": image.vo, "ad:group": "bench", "ad:user:fullname": "Bench Publisher",
            "ad:user:guid": "00000000-bench", "ad:user:uri": "https://appdb.bench.invalid/user",
            "ad:mpuri": f"https://appdb.bench.invalid/store/vm/image/{image.identifier}:{image.version}/",
            "hv:ram_minimum": "512", "hv:core_minimum": "1",
        }}


def later(previous: datetime | None) -> datetime:
    """Now, but at least a second after ``previous``: a re-signed list must never look like a rollback."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now if previous is None or now > previous else previous + timedelta(seconds=1)
