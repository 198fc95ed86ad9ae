"""Downloads for sources that publish a sha256 and send credentials (OCI registries): the sha256 is checked while
the sha512 is computed, and the headers are asked for at every attempt (a registry's token expires)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.server import ListServer
from imagesync.images.download import Downloader, DownloadError, DownloadPolicy, DownloadRequest
from imagesync.net.guard import parse_networks
from imagesync.sources.oci.auth import RegistryError

LOOPBACK = parse_networks(["127.0.0.0/8"])
DATA = bytes(range(256)) * 1000


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ListServer, Downloader]]:
    ca = pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "headers test CA")]))
    ca_dir = pki.write_ca_dir(tmp_path / "certs", [ca], [pki.make_crl(ca, [])])
    credential = pki.make_server_credential(ca)
    with ListServer(credential.cert_pem, credential.key_pem) as server:
        server.put("/v2/vm/blobs/layer", DATA)
        policy = DownloadPolicy(retries=2, backoff=0.0, min_free_space=0, allowed_networks=LOOPBACK)
        downloader = Downloader(tmp_path / "cache", policy, ca_dir=ca_dir, sleep=lambda _s: None)
        yield server, downloader
        downloader.close()


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:x-oauth-basic".encode()).decode()}


def test_a_sha256_only_image_is_checked_and_its_sha512_learnt(served: tuple[ListServer, Downloader]) -> None:
    server, downloader = served
    request = DownloadRequest(sha512="", sha256=hashlib.sha256(DATA).hexdigest(), size=len(DATA),
                              url=server.url("/v2/vm/blobs/layer"), name="reg/vm:1")
    got = downloader.fetch(request)
    assert got.sha512 == hashlib.sha512(DATA).hexdigest() and got.path.name == request.sha256
    again = downloader.fetch(request)  # from the cache, re-verified against the sha256
    assert again.fetched_bytes == 0 and again.sha512 == got.sha512


def test_a_wrong_sha256_is_refused(served: tuple[ListServer, Downloader]) -> None:
    server, downloader = served
    request = DownloadRequest(sha512="", sha256=hashlib.sha256(b"other").hexdigest(), size=len(DATA),
                              url=server.url("/v2/vm/blobs/layer"), name="reg/vm:1")
    with pytest.raises(DownloadError, match="checksum mismatch: expected sha256"):
        downloader.fetch(request)


def test_headers_are_asked_again_after_a_401(served: tuple[ListServer, Downloader]) -> None:
    server, downloader = served
    server.require_token("/v2/", "fresh")
    tokens = iter(["stale", "fresh"])
    request = DownloadRequest(sha512=hashlib.sha512(DATA).hexdigest(), size=len(DATA), name="reg/vm:1",
                              url=server.url("/v2/vm/blobs/layer"), headers=lambda: basic(next(tokens)))
    assert downloader.fetch(request).size == len(DATA)


def test_a_source_that_cannot_give_its_headers_fails_the_download_not_the_run(
        served: tuple[ListServer, Downloader]) -> None:
    server, downloader = served

    def gone() -> dict[str, str]:
        raise RegistryError("cannot get blob vm@sha256:..: connection refused", subject="registry 127.0.0.1:9")

    request = DownloadRequest(sha512=hashlib.sha512(DATA).hexdigest(), size=len(DATA), name="reg/vm:1",
                              url=server.url("/v2/vm/blobs/layer"), headers=gone)
    outcome = downloader.fetch_all([request])[request.key]
    assert isinstance(outcome, DownloadError)
    assert outcome.one_line().startswith("reg/vm:1: ") and "connection refused" in outcome.one_line()
