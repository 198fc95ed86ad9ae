"""Finding and checking an artifact's cosign signatures in its registry.

cosign stores signatures three ways, and all are read: the legacy tag ``sha256-<hex>.sig`` (a manifest whose
layers are the signed payloads); OCI 1.1 referrers of artifact type ``application/vnd.dev.cosign.artifact.sig.v1+json``
with the same layers; and, cosign >= 3.0's default, referrers carrying a Sigstore bundle. Referrers come through
the referrers API, or on a registry without it the ``sha256-<hex>`` index of the tag schema. Legacy signatures are
verified by :mod:`imagesync.sources.oci.cosign`, bundles by :mod:`imagesync.sources.oci.bundle`; one valid
signature of either kind by a configured key over this very digest is required.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagesync.errors import SignatureError
from imagesync.model import Signer
from imagesync.sources.oci.bundle import BUNDLE_MEDIA_TYPE, MAX_BUNDLE_BYTES, MAX_BUNDLES, verify_bundles
from imagesync.sources.oci.client import NotFoundError, RegistryClient
from imagesync.sources.oci.content import ContentError, Descriptor, Manifest
from imagesync.sources.oci.cosign import (
    MAX_LAYERS,
    MAX_PAYLOAD_BYTES,
    SIGNATURE_ARTIFACT_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    CosignPublicKey,
    DigestMismatchError,
    NoTrustedSignatureError,
    SignatureLayer,
    signature_tag,
    verify_signature_layers,
)

# How a bundle referrer is listed. go-containerregistry < 0.21.6 (cosign 3.0.x) wrote the tag schema's index entry
# with the config's media type, the empty one, instead of the manifest's artifactType: both are looked at, and
# the manifest's layers decide.
BUNDLE_LISTED_AS = frozenset({BUNDLE_MEDIA_TYPE, "application/vnd.oci.empty.v1+json"})


def verify(client: RegistryClient, repository: str, digest: str, keys: Sequence[CosignPublicKey]) -> Signer:
    """Who signed manifest ``digest`` of ``repository``, among ``keys``. Raises RegistryError when the signatures
    cannot be read, SignatureError subclasses when none is valid (none found counts as none valid)."""
    referrers = client.referrers_or_tag_schema(repository, digest)
    refusals: list[SignatureError] = []
    legacy = [d for d in referrers if d.artifact_type == SIGNATURE_ARTIFACT_TYPE]
    layers = _legacy(client, repository, digest) + _referred(client, repository, legacy)
    if layers:
        try:
            return verify_signature_layers(digest, layers[:MAX_LAYERS], keys)
        except SignatureError as exc:
            refusals.append(exc)
    # Fetched only when no legacy signature passed: an artifact signed both ways costs no extra requests.
    bundles = _bundles(client, repository, [d for d in referrers if d.artifact_type in BUNDLE_LISTED_AS])
    if bundles:
        try:
            return verify_bundles(digest, bundles, keys)
        except SignatureError as exc:
            refusals.append(exc)
    raise _refusal(digest, refusals)


def _refusal(digest: str, refusals: list[SignatureError]) -> SignatureError:
    """One line for the operator: what each kind found wrong, or that neither kind was found at all."""
    if not refusals:
        return NoTrustedSignatureError(
            f"no cosign signature for {digest}: neither a legacy signature (.sig tag or referrer) nor a cosign 3 "
            "Sigstore bundle referrer", hint="sign it with `cosign sign --key` and a key listed in cosign_keys")
    if len(refusals) == 1:
        return refusals[0]
    legacy, bundle = refusals
    # A signature moved from another artifact is the most telling verdict; otherwise the legacy one's kind
    # stands. Both messages are shown, so nothing is hidden either way.
    chosen = next((exc for exc in refusals if isinstance(exc, DigestMismatchError)), legacy)
    return type(chosen)(f"legacy: {legacy.message}; cosign 3 bundles: {bundle.message}", hint=chosen.hint)


def _legacy(client: RegistryClient, repository: str, digest: str) -> list[SignatureLayer]:
    try:
        manifest = client.manifest(repository, signature_tag(digest))
    except NotFoundError:
        return []
    return _payloads(client, repository, manifest)


def _referred(client: RegistryClient, repository: str, found: list[Descriptor]) -> list[SignatureLayer]:
    layers: list[SignatureLayer] = []
    for descriptor in found[:MAX_LAYERS]:
        layers += _payloads(client, repository, client.manifest(repository, descriptor.digest))
    return layers


def _payloads(client: RegistryClient, repository: str, manifest: Manifest) -> list[SignatureLayer]:
    return [SignatureLayer(payload=client.fetch_blob_bytes(repository, layer.digest, MAX_PAYLOAD_BYTES),
                           annotations=layer.annotations, media_type=layer.media_type)
            for layer in _layers(manifest)[:MAX_LAYERS] if layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE]


def _bundles(client: RegistryClient, repository: str, found: list[Descriptor]) -> list[bytes]:
    """The bundle blobs of these referrers (each capped); referrers holding no bundle layer are not signatures."""
    bundles: list[bytes] = []
    for descriptor in found[:MAX_BUNDLES]:
        layers = [layer for layer in _layers(client.manifest(repository, descriptor.digest))
                  if layer.media_type == BUNDLE_MEDIA_TYPE]
        # Sliced before fetching: a hostile referrer with thousands of layers costs MAX_BUNDLES requests at most.
        bundles += [client.fetch_blob_bytes(repository, layer.digest, MAX_BUNDLE_BYTES)
                    for layer in layers[:MAX_BUNDLES - len(bundles)]]
    return bundles


def _layers(manifest: Manifest) -> list[Descriptor]:
    try:
        return manifest.descriptors("layers")
    except ContentError:
        return []  # not a signature manifest: it signs nothing
