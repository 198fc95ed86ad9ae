"""Put content into a test registry with oras-py, a real OCI client (its own upload, auth and manifest code), so
what the registry holds was made the way publishers make it, not by the code under test.

oras-py takes a CA bundle path as ``tls_verify`` and answers both Basic and Bearer challenges. Its token cache
holds one token per client, so each helper uses a fresh client (one repository at a time).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.provider
import requests

from tests.support.oci_registry import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
QCOW2 = "application/x-qemu-disk"


@dataclass(frozen=True)
class Pushed:
    """What a push left in the registry: the manifest's digest and bytes, and the layer's digest."""

    digest: str
    manifest: bytes
    layer_digest: str


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _client(server: RegistryServer) -> oras.provider.Registry:
    backend = "basic" if server.auth == "htpasswd" else "token"
    client = oras.provider.Registry(hostname=server.host, tls_verify=str(server.ca_file), auth_backend=backend)
    if server.login is not None:
        client.auth.set_basic_auth(server.login.username, server.login.password)
    return client


def push_artifact(server: RegistryServer, repository: str, tag: str, data: bytes, *, media_type: str = QCOW2,
                  annotations: dict[str, str] | None = None, filename: str = "disk.img") -> Pushed:
    """Push ``data`` as the single layer of an OCI artifact tagged ``tag``; returns what the registry stored."""
    client = _client(server)
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp, filename)
        layer.write_bytes(data)
        response = client.push(f"{server.host}/{repository}:{tag}", files=[f"{layer}:{media_type}"],
                               manifest_annotations=annotations, disable_path_validation=True, quiet=True)
    digest = response.headers["Docker-Content-Digest"]
    manifest = get_manifest_bytes(server, repository, digest)
    return Pushed(digest, manifest, sha256(data))


def push_manifest(server: RegistryServer, repository: str, reference: str, manifest: dict[str, Any] | bytes, *,
                  media_type: str = OCI_MANIFEST) -> str:
    """PUT a manifest (a dict, or exact bytes) under ``reference``; returns its digest. Raises AssertionError if the
    registry refuses it."""
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest, separators=(",", ":")).encode()
    client = _client(server)
    response = client.do_request(f"https://{server.host}/v2/{repository}/manifests/{reference}", "PUT",
                                 data=body, headers={"Content-Type": media_type})
    assert response.status_code == 201, f"manifest PUT refused: {response.status_code} {response.text[:300]}"
    return sha256(body)


def push_blob(server: RegistryServer, repository: str, data: bytes) -> str:
    """Upload ``data`` as a blob (monolithic upload through oras); returns its digest."""
    client = _client(server)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "blob")
        path.write_bytes(data)
        layer = {"mediaType": "application/octet-stream", "digest": sha256(data), "size": len(data)}
        response = client.upload_blob(str(path), f"{server.host}/{repository}", layer)
    assert response.status_code in (200, 201), f"blob upload refused: {response.status_code}"
    return sha256(data)


def delete_manifest(server: RegistryServer, repository: str, reference: str) -> None:
    """Delete a manifest by tag or digest (a tag is resolved first: the registry deletes manifests by digest)."""
    client = _client(server)
    digest = reference
    if not reference.startswith("sha256:"):
        response = client.do_request(f"https://{server.host}/v2/{repository}/manifests/{reference}", "HEAD",
                                     headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        digest = response.headers["Docker-Content-Digest"]
    response = client.do_request(f"https://{server.host}/v2/{repository}/manifests/{digest}", "DELETE")
    assert response.status_code == 202, f"delete refused: {response.status_code}"


def get_manifest_bytes(server: RegistryServer, repository: str, reference: str) -> bytes:
    client = _client(server)
    response: requests.Response = client.do_request(
        f"https://{server.host}/v2/{repository}/manifests/{reference}", "GET",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert response.status_code == 200, f"manifest GET: {response.status_code}"
    return response.content
