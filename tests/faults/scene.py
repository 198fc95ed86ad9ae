"""The small world every fault scenario runs in: one healthy HTTPS server and two that will misbehave.

The layout is the same for every scenario, so a table row only has to say what breaks:

- list ``demo`` is served by ``scene.lists`` (behind a token) and names image ``demo-a``, whose bytes are on
  ``scene.images``, and image ``demo-b``, on the healthy server;
- list ``other`` and its image ``other-c`` are on the healthy server (the demo world's own).

A fault on ``scene.lists`` hits list ``demo`` alone and one on ``scene.images`` hits image ``demo-a`` alone; that
holds for TLS faults too, which belong to a whole server. Everything else must go on regardless.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.server import ListServer
from imagesync.demo.world import DemoImage, DemoWorld
from imagesync.sources.hepix import dn
from tests.support.samples import hepix_list

LIST_PATHS = {"demo": "/lists/demo.list", "other": "/lists/other.list"}
FAULTY_IMAGE = "demo-a"  # the one image whose bytes scene.images serves
ARCHIVE = "archive"


def _cn(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class FaultPki:
    """Keys are slow to make: one set for the whole session."""

    ca: pki.Credential
    signer: pki.Credential
    tls: pki.Credential  # 127.0.0.1 and localhost, issued by the trusted CA
    untrusted: pki.Credential  # the same names, issued by a CA that is not in ca_dir
    wrong_host: pki.Credential  # issued by the trusted CA for another host


def make_pki() -> FaultPki:
    ca = pki.make_ca(_cn("imagesync faults CA"))
    stranger = pki.make_ca(_cn("Nobody's CA"))
    return FaultPki(ca=ca, signer=pki.make_leaf(ca, _cn("lists.faults.invalid")),
                    tls=pki.make_server_credential(ca), untrusted=pki.make_server_credential(stranger),
                    wrong_host=pki.make_server_credential(ca, host="images.elsewhere.invalid"))


def image(identifier: str, version: str = "1", *, title: str | None = None, data: bytes | None = None) -> DemoImage:
    """A tiny raw disk whose bytes follow from identifier and version unless given."""
    body = data if data is not None else hashlib.sha512(f"{identifier}-{version}".encode()).digest() * 1024
    return DemoImage(identifier=identifier, version=version, title=title or identifier.title(), data=body)


class Scene:
    """Three servers and the lists they serve; stop() ends them."""

    def __init__(self, root: Path, keys: FaultPki) -> None:
        token = secrets.token_urlsafe(16)
        server = ListServer(keys.tls.cert_pem, keys.tls.key_pem).start()
        self.world = DemoWorld(root=root, ca=keys.ca, signer=keys.signer, server=server, token=token)
        self.lists = ListServer(keys.tls.cert_pem, keys.tls.key_pem).start()
        self.lists.require_token("/lists/", token)
        self.images = ListServer(keys.tls.cert_pem, keys.tls.key_pem).start()
        self.keys = keys
        self.served: dict[str, bytes] = {}  # list name -> the signed list last published

    def stop(self) -> None:
        for server in (self.world.server, self.lists, self.images):
            server.stop()

    def server_of_list(self, name: str) -> ListServer:
        return self.lists if name == "demo" else self.world.server

    def server_of_image(self, item: DemoImage) -> ListServer:
        return self.images if item.identifier == FAULTY_IMAGE else self.world.server

    def publish(self, name: str, images: list[DemoImage]) -> None:
        """Serve ``images`` and list ``name`` naming them, freshly signed."""
        entries = []
        for item in images:
            server = self.server_of_image(item)
            server.put(item.path, item.data)
            entries.append(item.entry(server.url("").rstrip("/")))
        now = datetime.now(UTC).replace(microsecond=0)
        signer = self.keys.signer.cert
        body = hepix_list(identifier=f"faults-{name}-list", created=now, expires=now + timedelta(days=30),
                          endorser_dn=dn.render(signer.subject), endorser_ca=dn.render(signer.issuer), images=entries)
        self.served[name] = pki.sign_smime(body, self.keys.signer)
        self.server_of_list(name).put(LIST_PATHS[name], self.served[name])

    def list_settings(self, names: tuple[str, ...]) -> dict[str, object]:
        signer = self.keys.signer.cert
        endorser = {"dn": dn.render(signer.subject), "ca": dn.render(signer.issuer)}
        return {name: {"url": self.server_of_list(name).url(LIST_PATHS[name]), "endorser": endorser,
                       **({"token_file": str(self.world.root / "token")} if name == "demo" else {})}
                for name in names}

    def config(self, run: Path, targets: dict[str, object] | None = None,
               download: dict[str, object] | None = None, lists: tuple[str, ...] = tuple(LIST_PATHS)) -> Path:
        """A config for a run whose state, cache and archive live under ``run``; built by the demo world, so
        whatever it must hold (trust, download settings) it holds; ``download`` keys are merged into its own."""
        run.mkdir(parents=True, exist_ok=True)
        every = {ARCHIVE: {"driver": "directory", "path": str(run / ARCHIVE)}, **(targets or {})}
        written = self.world.write_config({"state_dir": str(run / "state"), "cache_dir": str(run / "cache"),
                                           "lists": self.list_settings(lists), "targets": every})
        data = yaml.safe_load(written.read_text())
        # No retries and a 1 s timeout: how a fault is retried is tested elsewhere, here only that it is contained.
        data["download"] = {**data.get("download", {}), "timeout": 1, "retries": 0, **(download or {})}
        path = run / "imagesync.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


def holdings(root: Path) -> dict[str, str]:
    """What a directory target holds: ``list/identifier-version`` -> ``active`` | ``retired``."""
    found: dict[str, str] = {}
    for sidecar in sorted(root.glob("**/*.json")):
        parts = sidecar.relative_to(root).parts
        retired = parts[0] == "retired"
        key = "/".join(parts[1:] if retired else parts).rsplit(".", 2)[0]  # drop .<format>.json
        found[key] = "retired" if retired else "active"
    return found
