"""Image downloads refuse loopback, link-local, private and other non-global addresses (DESIGN §9), after name
resolution and on every redirect hop, against a real HTTPS ListServer on 127.0.0.1.

Forbidden addresses outside loopback appear only as values that must be refused: names reach them through a
resolver seam, and ``loopback_only`` turns any connect to them into a test failure, so no packet leaves the host
even if the guard is broken.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from imagesync.demo import pki
from imagesync.demo.server import Fault, ListServer
from imagesync.images.download import Downloader, DownloadError, DownloadPolicy, DownloadRequest
from imagesync.net import guard as netguard
from tests.support.netsafety import loopback_only

POLICY = DownloadPolicy(retries=0, timeout=5.0, connect_timeout=5.0, min_free_space=0)
LOOPBACK = netguard.parse_networks(["127.0.0.0/8"])
HINT = "(add the network to download.allowed_networks if this is intended)"
DATA = b"guarded image bytes " * 1000


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[pki.Credential, Path]:
    authority = pki.make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard test CA")]))
    return authority, pki.write_ca_dir(tmp_path_factory.mktemp("certs"), [authority], [pki.make_crl(authority, [])])


@pytest.fixture
def server(ca: tuple[pki.Credential, Path]) -> Iterator[ListServer]:
    credential = pki.make_server_credential(ca[0])
    with ListServer(credential.cert_pem, credential.key_pem) as srv:
        srv.put("/a.img", DATA)
        yield srv


def resolving(names: dict[str, str]) -> netguard.Resolver:
    """A resolver seam answering ``names`` (name -> IPv4 address) and nothing else; never sends a DNS query."""
    def resolve(host: str, port: int) -> list[netguard.AddrInfo]:
        if host not in names and host.replace(".", "").isdigit():
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (names[host], port))]
    return resolve


def downloader(tmp_path: Path, ca_dir: Path, *, allowed: tuple[netguard.Network, ...] = (),
               names: dict[str, str] | None = None, session: requests.Session | None = None) -> Downloader:
    policy = dataclasses.replace(POLICY, allowed_networks=allowed)
    resolve = resolving(names) if names is not None else netguard.system_resolver
    return Downloader(tmp_path / "cache", policy, ca_dir=ca_dir, resolve=resolve, session=session)


def request(url: str) -> DownloadRequest:
    return DownloadRequest(hashlib.sha512(DATA).hexdigest(), len(DATA), url, "lst/img")


def refusal(get: Downloader, url: str) -> str:
    try:
        with loopback_only(), pytest.raises(DownloadError) as info:
            get.fetch(request(url))
    finally:
        get.close()
    return str(info.value)


def test_default_policy_refuses_an_image_on_loopback(server: ListServer, ca: tuple[pki.Credential, Path],
                                                     tmp_path: Path) -> None:
    url = server.url("/a.img")
    get = Downloader(tmp_path / "cache", dataclasses.replace(POLICY), ca_dir=ca[1])
    line = refusal(get, url)
    assert line == f"lst/img: refused to download {url}: 127.0.0.1 is a loopback address {HINT}"
    assert server.hits("/a.img") == 0
    assert not (tmp_path / "cache" / "partial").exists() or not any((tmp_path / "cache" / "partial").iterdir())


def test_allowed_networks_let_the_loopback_server_through(server: ListServer, ca: tuple[pki.Credential, Path],
                                                          tmp_path: Path) -> None:
    get = downloader(tmp_path, ca[1], allowed=LOOPBACK)
    try:
        assert get.fetch(request(server.url("/a.img"))).size == len(DATA)
    finally:
        get.close()
    assert server.hits("/a.img") == 1


def test_metadata_address_literal_refused_before_any_connect(ca: tuple[pki.Credential, Path], tmp_path: Path) -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    line = refusal(downloader(tmp_path, ca[1], allowed=LOOPBACK), url)
    assert line == f"lst/img: refused to download {url}: 169.254.169.254 is a link-local address {HINT}"


def test_name_resolving_to_a_private_address_refused(server: ListServer, ca: tuple[pki.Credential, Path],
                                                     tmp_path: Path) -> None:
    url = f"https://images.example.test:{server.port}/a.img"
    get = downloader(tmp_path, ca[1], allowed=LOOPBACK, names={"images.example.test": "10.0.0.1"})
    line = refusal(get, url)
    assert f"refused to download {url}: images.example.test resolves to 10.0.0.1, a private address {HINT}" in line


def test_redirect_hop_to_a_forbidden_address_refused(server: ListServer, ca: tuple[pki.Credential, Path],
                                                     tmp_path: Path) -> None:
    server.inject("/r.img", Fault.status(302, {"Location": "http://169.254.169.254/latest/meta-data/"}))
    url = server.url("/r.img")
    line = refusal(downloader(tmp_path, ca[1], allowed=LOOPBACK), url)
    assert line == f"lst/img: refused to download {url}: 169.254.169.254 is a link-local address {HINT}"
    assert server.hits("/r.img") == 1


def test_redirect_hop_outside_the_allowed_network_refused(server: ListServer, ca: tuple[pki.Credential, Path],
                                                          tmp_path: Path) -> None:
    # Only 127.0.0.1 is allowed; the hop to 127.0.0.2 (loopback too, so harmless if followed) must be refused.
    server.inject("/r.img", Fault.status(302, {"Location": f"http://127.0.0.2:{server.port}/a.img"}))
    get = downloader(tmp_path, ca[1], allowed=netguard.parse_networks(["127.0.0.1/32"]))
    line = refusal(get, server.url("/r.img"))
    assert line.endswith(f": 127.0.0.2 is a loopback address {HINT}")


def test_redirect_within_the_allowed_network_is_followed(server: ListServer, ca: tuple[pki.Credential, Path],
                                                         tmp_path: Path) -> None:
    server.inject("/r.img", Fault.status(302, {"Location": server.url("/a.img")}))
    get = downloader(tmp_path, ca[1], allowed=LOOPBACK)
    try:
        assert get.fetch(request(server.url("/r.img"))).size == len(DATA)
    finally:
        get.close()
    assert (server.hits("/r.img"), server.hits("/a.img")) == (1, 1)


def test_connects_to_the_checked_address_and_verifies_tls_for_the_name(ca: tuple[pki.Credential, Path],
                                                                       tmp_path: Path) -> None:
    credential = pki.make_server_credential(ca[0], host="images.example.test")
    with ListServer(credential.cert_pem, credential.key_pem) as srv:
        srv.put("/a.img", DATA)
        url = f"https://images.example.test:{srv.port}/a.img"
        # The name exists only in the seam: the download works only if it connects to the address checked.
        get = downloader(tmp_path, ca[1], allowed=LOOPBACK, names={"images.example.test": "127.0.0.1"})
        try:
            with loopback_only():
                assert get.fetch(request(url)).size == len(DATA)
        finally:
            get.close()
        assert srv.last_headers("/a.img")["Host"] == f"images.example.test:{srv.port}"


def test_certificate_is_still_checked_against_the_name_not_the_address(
        server: ListServer, ca: tuple[pki.Credential, Path], tmp_path: Path) -> None:
    # The server's certificate names 127.0.0.1 and localhost: verifying it against the connected address
    # would wrongly accept it for another name.
    url = f"https://other.example.test:{server.port}/a.img"
    get = downloader(tmp_path, ca[1], allowed=LOOPBACK, names={"other.example.test": "127.0.0.1"})
    line = refusal(get, url)
    assert "TLS certificate of other.example.test is for another host" in line
    assert server.hits("/a.img") == 0


def test_proxied_download_checks_the_target_before_using_the_proxy(
        server: ListServer, ca: tuple[pki.Credential, Path], tmp_path: Path) -> None:
    session = requests.Session()
    session.trust_env = False
    # Nothing listens on port 1: if the guard let the request through, it would fail to reach the proxy instead.
    session.proxies = {"http": "http://127.0.0.1:1", "https": "http://127.0.0.1:1"}
    url = server.url("/a.img")
    line = refusal(downloader(tmp_path, ca[1], session=session), url)
    assert line == f"lst/img: refused to download {url}: 127.0.0.1 is a loopback address {HINT}"

