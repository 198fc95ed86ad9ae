"""RegistryClient against a real registry (docker-registry 2.8) in each auth mode: anonymous, htpasswd, token.

What the registry holds is pushed with oras-py (tests/support/oci_push.py), never with the code under test.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from imagesync.net.guard import parse_networks
from imagesync.sources.oci.auth import Credentials, RegistryError
from imagesync.sources.oci.client import (
    DigestMismatchError,
    NotFoundError,
    ReferrersUnsupportedError,
    RegistryClient,
)
from imagesync.sources.oci.content import OCI_INDEX, OCI_MANIFEST
from tests.support import oci_push
from tests.support.oci_registry import Registries, RegistryServer, free_port

LOOPBACK = parse_networks(["127.0.0.0/8"])
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"


def make_client(server: RegistryServer, *, password: str | None = None, anonymous: bool = False,
                session: requests.Session | None = None, ca_dir: Path | None = None) -> RegistryClient:
    credentials = None
    if server.login is not None and not anonymous:
        credentials = Credentials(server.login.username, password or server.login.password)
    return RegistryClient(server.url, credentials=credentials, ca_dir=ca_dir or server.ca_dir,
                          allowed_networks=LOOPBACK, timeout=10, session=session)


@pytest.fixture
def client(oci_registry: RegistryServer) -> Iterator[RegistryClient]:
    with make_client(oci_registry) as c:
        yield c


@pytest.fixture
def repo() -> str:
    return f"imagesync/t{uuid.uuid4().hex[:12]}"


def assert_one_clean_line(exc: BaseException, *absent: str) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    for secret in absent:
        assert secret not in text
    return text


def test_tags_lists_every_tag(oci_registry: RegistryServer, client: RegistryClient, repo: str) -> None:
    for tag in ("2024.01", "2024.02", "latest"):
        oci_push.push_artifact(oci_registry, repo, tag, tag.encode())
    assert sorted(client.tags(repo)) == ["2024.01", "2024.02", "latest"]


def test_head_gives_the_pushed_digest_without_getting_the_manifest(oci_registry: RegistryServer, repo: str) -> None:
    pushed = oci_push.push_artifact(oci_registry, repo, "v1", b"disk bytes")
    seen: list[tuple[str, str]] = []
    session = requests.Session()  # the client's seam: its hook sees every request the client sends
    session.hooks["response"].append(lambda r, *a, **k: seen.append((r.request.method or "", r.request.url or "")))
    with make_client(oci_registry, session=session) as client:
        assert client.manifest_digest(repo, "v1") == pushed.digest
    assert [m for m, u in seen if "/manifests/" in u and m != "HEAD"] == []
    assert any(m == "HEAD" and u.endswith(f"/{repo}/manifests/v1") for m, u in seen)


def test_manifest_by_tag_and_by_digest(oci_registry: RegistryServer, client: RegistryClient, repo: str) -> None:
    annotations = {"org.opencontainers.image.version": "1.2", "eu.egi.vm.os": "alma"}
    pushed = oci_push.push_artifact(oci_registry, repo, "v1", b"qcow2 bytes", annotations=annotations)
    for reference in ("v1", pushed.digest):
        manifest = client.manifest(repo, reference)
        assert (manifest.digest, manifest.media_type, manifest.raw) == (pushed.digest, OCI_MANIFEST, pushed.manifest)
        assert manifest.data["annotations"] == annotations
        [layer] = manifest.descriptors("layers")
        assert (layer.digest, layer.size, layer.media_type) == (pushed.layer_digest, 11, oci_push.QCOW2)


def test_a_manifest_altered_in_storage_is_refused(oci_registry: RegistryServer, client: RegistryClient,
                                                  repo: str) -> None:
    # Not a fake: the registry itself serves the altered bytes under the original digest (in the header, and
    # when asked by digest), as a damaged or lying registry would.
    pushed = oci_push.push_artifact(oci_registry, repo, "v1", b"x", annotations={"note": "good"})
    oci_registry.tamper_blob(pushed.digest, b'"good"', b'"evil"')
    for reference in ("v1", pushed.digest):
        with pytest.raises(DigestMismatchError) as caught:
            client.manifest(repo, reference)
        text = assert_one_clean_line(caught.value)
        assert f"registry {oci_registry.host}: manifest {repo}" in text and pushed.digest in text


def test_unknown_tag_is_not_found(client: RegistryClient, oci_registry: RegistryServer, repo: str) -> None:
    oci_push.push_artifact(oci_registry, repo, "v1", b"x")
    with pytest.raises(NotFoundError, match=rf"manifest {repo}:v2: HTTP 404: not found"):
        client.manifest_digest(repo, "v2")


def test_referrers_fall_back_to_the_tag_schema(oci_registry: RegistryServer, client: RegistryClient,
                                               repo: str) -> None:
    image = oci_push.push_artifact(oci_registry, repo, "v1", b"image")
    with pytest.raises(ReferrersUnsupportedError):  # docker-registry 2.8 has no referrers API: 404
        client.referrers(repo, image.digest)
    assert client.referrers_or_tag_schema(repo, image.digest) == []  # no fallback tag: no referrers
    sig = oci_push.push_artifact(oci_registry, repo, "sig", b"signature", media_type="application/octet-stream")
    sbom = oci_push.push_artifact(oci_registry, repo, "sbom", b"{}", media_type=SBOM_TYPE)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sig.digest, "size": len(sig.manifest), "artifactType": SIG_TYPE,
         "annotations": {"dev.sigstore.cosign/signature": "MEUC"}},
        {"mediaType": OCI_MANIFEST, "digest": sbom.digest, "size": len(sbom.manifest), "artifactType": SBOM_TYPE}]}
    oci_push.push_manifest(oci_registry, repo, image.digest.replace(":", "-"), index, media_type=OCI_INDEX)
    found = client.referrers_or_tag_schema(repo, image.digest)
    assert [d.digest for d in found] == [sig.digest, sbom.digest]
    [only] = client.referrers_or_tag_schema(repo, image.digest, artifact_type=SIG_TYPE)
    assert (only.digest, only.artifact_type, only.annotations) == (sig.digest, SIG_TYPE,
                                                                   {"dev.sigstore.cosign/signature": "MEUC"})


def test_small_blob_is_digest_checked(oci_registry: RegistryServer, client: RegistryClient, repo: str) -> None:
    pushed = oci_push.push_artifact(oci_registry, repo, "v1", b"signature payload")
    assert client.fetch_blob_bytes(repo, pushed.layer_digest, 1024) == b"signature payload"
    with pytest.raises(RegistryError, match="exceeds the cap of 8 bytes"):
        client.fetch_blob_bytes(repo, pushed.layer_digest, 8)
    oci_registry.corrupt_blob(pushed.layer_digest)
    with pytest.raises(DigestMismatchError) as caught:
        client.fetch_blob_bytes(repo, pushed.layer_digest, 1024)
    assert pushed.layer_digest in assert_one_clean_line(caught.value)


def test_blob_request_streams_with_the_headers_given(oci_registry: RegistryServer, client: RegistryClient,
                                                     repo: str) -> None:
    data = b"\x00qcow" * 1000
    pushed = oci_push.push_artifact(oci_registry, repo, "v1", data)
    request = client.blob(repo, pushed.layer_digest)
    assert request.size == len(data)
    assert repr(request).count("Bearer") == repr(request).count("Basic") == 0
    expected_scheme = {"none": None, "htpasswd": "Basic", "token": "Bearer"}[oci_registry.auth]
    assert request.headers.get("Authorization", " ").split(" ")[0] == (expected_scheme or "")
    response = requests.get(request.url, headers=dict(request.headers), verify=str(oci_registry.ca_file), timeout=10)
    assert (response.status_code, response.content) == (200, data)


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_wrong_password_is_one_clean_line(oci_registries: Registries, auth: str, repo: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    server = oci_registries.get(auth)  # type: ignore[arg-type]
    oci_push.push_artifact(server, repo, "v1", b"x")
    caplog.set_level(logging.DEBUG, logger="imagesync")
    with make_client(server, password="Wr0ng-Passw0rd-42") as client, pytest.raises(RegistryError) as caught:
        client.tags(repo)
    text = assert_one_clean_line(caught.value, "Wr0ng-Passw0rd-42")
    assert text.startswith(f"registry {server.host}: cannot get tags of {repo}: ")
    assert "refused" in text and "check the username and password" in text
    assert caplog.records and "Wr0ng-Passw0rd-42" not in caplog.text


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_anonymous_client_is_told_credentials_are_needed(oci_registries: Registries, auth: str, repo: str) -> None:
    server = oci_registries.get(auth)  # type: ignore[arg-type]
    with make_client(server, anonymous=True) as client, pytest.raises(RegistryError) as caught:
        client.tags(repo)
    assert "needs credentials" in assert_one_clean_line(caught.value)


def test_token_is_fetched_once_per_repository(oci_registries: Registries, repo: str) -> None:
    server = oci_registries.get("token")
    assert server.token_service is not None
    pushed = oci_push.push_artifact(server, repo, "v1", b"x")
    before = len(server.token_service.requests)
    with make_client(server) as client:
        client.tags(repo)
        client.manifest_digest(repo, "v1")
        client.manifest(repo, pushed.digest)
        client.fetch_blob_bytes(repo, pushed.layer_digest, 100)
    asked = server.token_service.requests[before:]
    assert [(r.user, r.scopes) for r in asked] == [("pusher", [f"repository:{repo}:pull"])]


def test_registry_down_is_one_clean_line(tmp_path: Path, repo: str) -> None:
    port = free_port()  # nothing listens there any more
    with RegistryClient(f"https://127.0.0.1:{port}", ca_dir=tmp_path, allowed_networks=LOOPBACK,
                        credentials=Credentials("someone", "S3cret-Never-Shown")) as client, \
            pytest.raises(RegistryError) as caught:
        client.manifest_digest(repo, "v1")
    text = assert_one_clean_line(caught.value, "S3cret-Never-Shown")
    assert text == (f"registry 127.0.0.1:{port}: cannot get manifest {repo}:v1: connection refused by "
                    f"127.0.0.1:{port} (is the server up?)")


def test_untrusted_certificate_is_named(oci_registry: RegistryServer, tmp_path: Path, repo: str) -> None:
    with make_client(oci_registry, ca_dir=tmp_path) as client, pytest.raises(RegistryError) as caught:
        client.tags(repo)
    assert "TLS certificate of 127.0.0.1 not trusted" in assert_one_clean_line(caught.value)


def test_loopback_registry_is_refused_unless_allowed(oci_registry: RegistryServer, repo: str) -> None:
    with RegistryClient(oci_registry.url, ca_dir=oci_registry.ca_dir) as client, \
            pytest.raises(RegistryError) as caught:
        client.tags(repo)
    text = assert_one_clean_line(caught.value)
    assert "refused to connect: 127.0.0.1 is a loopback address" in text
    assert "download.allowed_networks" in text


def test_a_refused_token_is_fetched_again_once(oci_registries: Registries, repo: str) -> None:
    server = oci_registries.get("token")
    assert server.token_service is not None
    oci_push.push_artifact(server, repo, "v1", b"x")
    with make_client(server) as client:
        client.tags(repo)
        # A token the client still believes valid but the registry refuses (revoked, or its clock runs ahead):
        # planted in the cache, the one place such a token can come from.
        scope = f"repository:{repo}:pull"
        client._auth._tokens[scope] = dataclasses.replace(client._auth._tokens[scope], value="not.a.token")
        before = len(server.token_service.requests)
        assert client.tags(repo) == ["v1"]
    assert len(server.token_service.requests) == before + 1
