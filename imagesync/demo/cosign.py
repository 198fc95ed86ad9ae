"""OUR OWN cosign-format signer, for the demo and the tests: not cosign, and no evidence of interoperability by itself.

It builds what `cosign sign --key` pushes for a manifest digest: the simple-signing payload, its signature in
the ``dev.cosignproject.cosign/signature`` annotation, and the `.sig` manifest (or an OCI 1.1 referrer
manifest) with its config and layer blobs, laid out as cosign does. Interoperability is shown by the real
cosign signatures in tests/unit/test_cosign.py; this signer only makes cases those cannot cover (other
key types, wrong digests, tampering) cheap, and lets ``imagesync demo --oci`` sign without cosign installed.

It also builds what cosign >= 3.0 pushes by default: an in-toto statement signed as DSSE inside a Sigstore
bundle v0.3 (:func:`sigstore_bundle`), and the OCI 1.1 referrer manifest carrying it (:func:`bundle_referrer`).
No real cosign 3 bundle is at hand to test against (see /work/notes/cosign-formats.md for the format's sources).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from imagesync.sources.oci.bundle import (
    BUNDLE_MEDIA_TYPE,
    INTOTO_PAYLOAD_TYPE,
    SIGN_PREDICATE_TYPE,
    STATEMENT_TYPE,
    pae,
)
from imagesync.sources.oci.cosign import (
    PAYLOAD_TYPE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SignatureLayer,
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


@dataclass(frozen=True)
class SignatureManifest:
    """A signature manifest as a registry would serve it: its bytes, digest, and every blob it points to."""

    manifest: bytes
    digest: str
    blobs: dict[str, bytes]
    layers: tuple[SignatureLayer, ...]


def new_private_key(kind: str = "ecdsa-p256") -> PrivateKey:
    """A fresh key of ``kind``: ecdsa-p256, ecdsa-p384, rsa-2048 or ed25519. ValueError for another kind."""
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def public_key_pem(key: PrivateKey) -> bytes:
    """The public half as ``cosign.pub`` holds it (PEM SubjectPublicKeyInfo)."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def payload_for(digest: str, reference: str = "registry.example/vm/disk") -> bytes:
    """The simple-signing payload cosign writes for ``digest`` (compact JSON, ``"optional": null``)."""
    document = {"critical": {"identity": {"docker-reference": reference},
                             "image": {"docker-manifest-digest": digest}, "type": PAYLOAD_TYPE},
                "optional": None}
    return json.dumps(document, separators=(",", ":")).encode()


def sign(key: PrivateKey, payload: bytes) -> str:
    """Base64 signature over ``payload`` with the hash cosign uses for the key type (SHA-256, pure Ed25519)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(payload)
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(raw).decode()


def signature_layer(key: PrivateKey, digest: str, *, payload: bytes | None = None) -> SignatureLayer:
    """A layer signing ``digest`` (or the given ``payload`` verbatim) with ``key``."""
    body = payload_for(digest) if payload is None else payload
    return SignatureLayer(payload=body, annotations={SIGNATURE_ANNOTATION: sign(key, body)})


def sig_manifest(layers: Sequence[SignatureLayer], *, subject: dict[str, object] | None = None) -> SignatureManifest:
    """The `.sig` tag's manifest holding ``layers``; with ``subject`` (a descriptor), the OCI 1.1 referrer form."""
    blobs = {_digest(layer.payload): layer.payload for layer in layers}
    config = _config(layers) if subject is None else b"{}"
    blobs[_digest(config)] = config
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": _digest(config)},
        "layers": [_descriptor(layer) for layer in layers],
    }
    if subject is not None:
        # cosign's referrers mode: the artifact type goes both top-level and into config.mediaType.
        document["artifactType"] = SIGNATURE_ARTIFACT_TYPE
        document["config"] = {"mediaType": SIGNATURE_ARTIFACT_TYPE, "size": len(config), "digest": _digest(config)}
        document["subject"] = subject
    manifest = json.dumps(document, separators=(",", ":")).encode()
    return SignatureManifest(manifest=manifest, digest=_digest(manifest), blobs=blobs, layers=tuple(layers))


def statement_for(digest: str, predicate_type: str = SIGN_PREDICATE_TYPE) -> bytes:
    """The in-toto statement `cosign sign` signs for ``digest``: one subject, no name, an empty predicate."""
    algorithm, value = digest.split(":", 1)
    document = {"_type": STATEMENT_TYPE, "subject": [{"digest": {algorithm: value}}],
                "predicateType": predicate_type, "predicate": {}}
    return json.dumps(document, separators=(",", ":")).encode()


def sigstore_bundle(key: PrivateKey, statement: bytes, *, signed: bytes | None = None) -> bytes:
    """A key-based Sigstore bundle v0.3 holding ``statement`` in a DSSE envelope signed by ``key``; with
    ``signed``, the signature is over that statement instead (a tampered envelope). No Rekor entry."""
    signature = sign(key, pae(INTOTO_PAYLOAD_TYPE, statement if signed is None else signed))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    document = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        # cosign's hint: base64 of the SHA-256 of the key's DER SPKI. Unauthenticated; verifiers ignore it.
        "verificationMaterial": {"publicKey": {"hint": base64.b64encode(hashlib.sha256(spki).digest()).decode()},
                                 "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": INTOTO_PAYLOAD_TYPE,
                         "signatures": [{"sig": signature}]},
    }
    return json.dumps(document).encode()


def bundle_referrer(bundle: bytes, subject: dict[str, object]) -> SignatureManifest:
    """The referrer manifest cosign 3 pushes for ``bundle``, pointing at ``subject`` (a descriptor)."""
    config = b"{}"
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": OCI_EMPTY, "artifactType": BUNDLE_MEDIA_TYPE, "size": len(config),
                   "digest": _digest(config)},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "size": len(bundle), "digest": _digest(bundle)}],
        "subject": subject,
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": SIGN_PREDICATE_TYPE},
    }
    manifest = json.dumps(document, separators=(",", ":")).encode()
    return SignatureManifest(manifest=manifest, digest=_digest(manifest),
                             blobs={_digest(config): config, _digest(bundle): bundle}, layers=())


def _descriptor(layer: SignatureLayer) -> dict[str, object]:
    return {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "size": len(layer.payload), "digest": _digest(layer.payload),
            "annotations": dict(layer.annotations)}


def _config(layers: Sequence[SignatureLayer]) -> bytes:
    # The shape go-containerregistry gives cosign's signature image config: one uncompressed diff per layer.
    document = {"architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "", "rootfs": {"type": "layers", "diff_ids": [_digest(layer.payload) for layer in layers]},
                "config": {}}
    return json.dumps(document, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
