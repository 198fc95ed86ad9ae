"""Finding and checking an artifact's cosign signatures in its registry.

cosign stores signatures two ways, and both are read: the legacy tag ``sha256-<hex>.sig`` (a manifest whose layers
are the signed payloads), and OCI 1.1 referrers of the artifact (through the referrers API, or on a registry
without it the ``sha256-<hex>`` index of the tag schema). Whatever is found is verified by
:mod:`imagesync.sources.oci.cosign`: one valid signature by a configured key over this very digest is required.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagesync.model import Signer
from imagesync.sources.oci.client import NotFoundError, RegistryClient
from imagesync.sources.oci.content import ContentError, Manifest
from imagesync.sources.oci.cosign import (
    MAX_LAYERS,
    MAX_PAYLOAD_BYTES,
    SIGNATURE_ARTIFACT_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    CosignPublicKey,
    SignatureLayer,
    signature_tag,
    verify_signature_layers,
)


def verify(client: RegistryClient, repository: str, digest: str, keys: Sequence[CosignPublicKey]) -> Signer:
    """Who signed manifest ``digest`` of ``repository``, among ``keys``. Raises RegistryError when the signatures
    cannot be read, SignatureError subclasses when none is valid (none found counts as none valid)."""
    layers = _legacy(client, repository, digest) + _referred(client, repository, digest)
    return verify_signature_layers(digest, layers[:MAX_LAYERS], keys)


def _legacy(client: RegistryClient, repository: str, digest: str) -> list[SignatureLayer]:
    try:
        manifest = client.manifest(repository, signature_tag(digest))
    except NotFoundError:
        return []
    return _payloads(client, repository, manifest)


def _referred(client: RegistryClient, repository: str, digest: str) -> list[SignatureLayer]:
    found = client.referrers_or_tag_schema(repository, digest, artifact_type=SIGNATURE_ARTIFACT_TYPE)
    layers: list[SignatureLayer] = []
    for descriptor in found[:MAX_LAYERS]:
        layers += _payloads(client, repository, client.manifest(repository, descriptor.digest))
    return layers


def _payloads(client: RegistryClient, repository: str, manifest: Manifest) -> list[SignatureLayer]:
    try:
        descriptors = manifest.descriptors("layers")
    except ContentError:
        return []  # not a signature manifest: it signs nothing
    return [SignatureLayer(payload=client.fetch_blob_bytes(repository, layer.digest, MAX_PAYLOAD_BYTES),
                           annotations=layer.annotations, media_type=layer.media_type)
            for layer in descriptors[:MAX_LAYERS] if layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE]
