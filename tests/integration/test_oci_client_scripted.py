"""RegistryClient against a scripted registry (tests/support/oci_fake.py): the answers docker-registry 2.8 never
gives. The fake injects them on purpose: pagination, a HEAD without digest, a referrers API, a lying digest header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync.net.guard import parse_networks
from imagesync.sources.oci.auth import RegistryError
from imagesync.sources.oci.client import DigestMismatchError, RegistryClient
from imagesync.sources.oci.content import OCI_INDEX, OCI_MANIFEST, digest_of
from tests.support.oci_fake import Answer, ScriptedRegistry
from tests.support.tls import make_server_pki, write_igtf_ca

LOOPBACK = parse_networks(["127.0.0.0/8"])
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[ScriptedRegistry, RegistryClient]]:
    pki = make_server_pki()
    write_igtf_ca(pki.ca_pem, tmp_path / "ca")
    with ScriptedRegistry(pki) as registry, \
            RegistryClient(registry.url, ca_dir=tmp_path / "ca", allowed_networks=LOOPBACK) as client:
        yield registry, client


def tags_page(*tags: str, link: str | None = None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if link:
        headers["Link"] = f'<{link}>; rel="next"'
    return Answer(200, headers, json.dumps({"name": "r", "tags": list(tags)}).encode())


def test_tags_follow_relative_and_absolute_next_links(fake: tuple[ScriptedRegistry, RegistryClient]) -> None:
    registry, client = fake
    registry.routes["/v2/r/tags/list?n=1000"] = tags_page("a", "b", link="/v2/r/tags/list?n=2&last=b")
    registry.routes["/v2/r/tags/list?n=2&last=b"] = tags_page("c", "d", link=f"{registry.url}/v2/r/tags/list?last=d")
    registry.routes["/v2/r/tags/list?last=d"] = tags_page("e")
    assert client.tags("r") == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(("link", "message"), [
    ("https://elsewhere.example/v2/r/tags/list?last=b", "next page on another host"),
    ("/v2/r/tags/list?n=1000", "pagination does not end"),
])
def test_tags_refuse_a_foreign_or_endless_next_link(fake: tuple[ScriptedRegistry, RegistryClient], link: str,
                                                    message: str) -> None:
    registry, client = fake
    registry.routes["/v2/r/tags/list?n=1000"] = tags_page("a", link=link)
    with pytest.raises(RegistryError, match=message):
        client.tags("r")


def test_digest_from_get_when_head_has_none(fake: tuple[ScriptedRegistry, RegistryClient]) -> None:
    registry, client = fake
    registry.routes["/v2/r/manifests/v1"] = Answer(200, {"Content-Type": OCI_MANIFEST}, MANIFEST)
    assert client.manifest_digest("r", "v1") == digest_of(MANIFEST)
    assert [m for m, p in registry.requests] == ["HEAD", "GET"]


def test_lying_digest_header_is_refused(fake: tuple[ScriptedRegistry, RegistryClient]) -> None:
    # Injected by this fake: a header announcing another manifest's digest than the body's.
    registry, client = fake
    lie = digest_of(b"another manifest")
    registry.routes["/v2/r/manifests/v1"] = Answer(200, {"Content-Type": OCI_MANIFEST,
                                                         "Docker-Content-Digest": lie}, MANIFEST)
    with pytest.raises(DigestMismatchError, match=f"expected {lie}, got {digest_of(MANIFEST)}"):
        client.manifest("r", "v1")


def test_oversized_manifest_is_refused(fake: tuple[ScriptedRegistry, RegistryClient]) -> None:
    registry, client = fake
    huge = MANIFEST[:-1] + b', "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    registry.routes["/v2/r/manifests/v1"] = Answer(200, {"Content-Type": OCI_MANIFEST}, huge)
    with pytest.raises(RegistryError, match="exceeds the cap of 4194304 bytes"):
        client.manifest("r", "v1")


def index_of(*artifact_types: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(t.encode()), "size": 1, "artifactType": t}
        for t in artifact_types]}).encode()


@pytest.mark.parametrize("filters_applied", [True, False])
def test_referrers_api_is_used_and_filtered(fake: tuple[ScriptedRegistry, RegistryClient],
                                            filters_applied: bool) -> None:
    registry, client = fake
    subject = digest_of(b"image")
    headers = {"Content-Type": OCI_INDEX, **({"OCI-Filters-Applied": "artifactType"} if filters_applied else {})}
    body = index_of("application/sig") if filters_applied else index_of("application/sig", "application/sbom")
    registry.routes[f"/v2/r/referrers/{subject}?artifactType=application%2Fsig"] = Answer(200, headers, body)
    registry.routes[f"/v2/r/referrers/{subject}"] = Answer(200, {"Content-Type": OCI_INDEX},
                                                           index_of("application/sig", "application/sbom"))
    [sig] = client.referrers_or_tag_schema("r", subject, artifact_type="application/sig")
    assert sig.digest == digest_of(b"application/sig")
    assert len(client.referrers("r", subject)) == 2
    assert not any("sha256-" in p for m, p in registry.requests)  # no fallback when the API answers


@pytest.mark.parametrize("name", ["../etc", "R", "a//b", "a?b", "a/b#c", ""])
def test_bad_repository_names_never_reach_a_url(fake: tuple[ScriptedRegistry, RegistryClient], name: str) -> None:
    registry, client = fake
    with pytest.raises(RegistryError, match="invalid repository name"):
        client.tags(name)
    assert registry.requests == []
