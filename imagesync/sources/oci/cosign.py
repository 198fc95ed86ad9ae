"""Verify cosign signatures of OCI artifacts against configured public keys. No I/O except reading key files.

What is checked (formats as sigstore/cosign writes them: pkg/types/media.go, pkg/oci/static/signature.go,
pkg/oci/remote/write.go): cosign's "simple signing" scheme, where
each signature is one layer of media type :data:`SIMPLE_SIGNING_MEDIA_TYPE`; the layer blob is a small JSON
payload naming the signed manifest digest, and the layer's annotation :data:`SIGNATURE_ANNOTATION` holds the
base64 signature over exactly those blob bytes. The registry client collects such layers from the legacy tag
:func:`signature_tag` and from OCI 1.1 referrers of artifact type :data:`SIGNATURE_ARTIFACT_TYPE`, and hands
them here as :class:`SignatureLayer` values; this module never sees the network.

An artifact passes when any one layer carries a signature, by one of the configured keys, over a payload of
type ``cosign container image signature`` that names the expected manifest digest. The payload is parsed only
after its signature verified. ``docker-reference`` is not enforced: cosign itself ignores it, and Harbor
replication or a mirror changes it legitimately.

Design note: keyless signatures (Fulcio certificate + Rekor bundle, identity + issuer) come as the same layers,
with the annotations :data:`CERTIFICATE_ANNOTATION`, :data:`CHAIN_ANNOTATION` and :data:`BUNDLE_ANNOTATION`.
They slot in as a second verifier behind :func:`verify_signature_layers`: the ``keys`` argument becomes a
tuple of trust anchors of either kind (``CosignPublicKey`` or a future ``KeylessIdentity(identity, issuer,
trusted_root)``), and each anchor gets a ``match(layer) -> bytes | None`` that returns the verified payload.
The keyless one would hand the certificate, chain, bundle, payload and signature to sigstore-python's
verifier (certificate chain to the Fulcio root, SCT, Rekor inclusion proof or SET, identity + issuer policy)
and return the payload only if all hold; payload parsing and the digest check below stay shared, and the
returned :class:`~imagesync.model.Signer` names the identity (``dn``) and issuer (``ca``) instead of a key.
cosign 3's default "new bundle format" (a Sigstore bundle referrer, :data:`SIGSTORE_BUNDLE_ARTIFACT_TYPE`, DSSE
over an in-toto statement) is a third payload kind, verified by :mod:`imagesync.sources.oci.bundle` with the
same keys and :func:`verifies`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from imagesync.errors import BadSignatureError, ConfigError, MalformedSignatureError, SignatureError
from imagesync.model import Signer

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
# `cosign sign --registry-referrers-mode=oci-1-1`: the referrer manifest's artifactType and config.mediaType.
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
# cosign >= 3.0 by default: a Sigstore bundle as referrer (verified in bundle.py, not here).
SIGSTORE_BUNDLE_ARTIFACT_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "cosign container image signature"

# cosign's payloads are about 250 bytes (more with -a annotations); anything near these caps is not one of ours
# and would only cost memory and CPU. The layer cap bounds the work a hostile `.sig` tag can cause.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SIGNATURE_CHARS = 4096
MAX_LAYERS = 64

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_CRITICAL_KEYS = frozenset({"identity", "image", "type"})

PublicKeyType = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class NoTrustedSignatureError(BadSignatureError):
    """No signature layer verifies under any configured cosign key."""


class DigestMismatchError(BadSignatureError):
    """A configured key signed a payload, but for another manifest digest (a signature moved between artifacts)."""


@dataclass(frozen=True)
class CosignPublicKey:
    """A configured verification key. ``fingerprint`` is ``sha256:`` + the hex SHA-256 of its DER SPKI."""

    path: str
    key: PublicKeyType = field(repr=False)
    fingerprint: str


@dataclass(frozen=True)
class SignatureLayer:
    """One candidate signature as the registry client found it: the layer blob and the descriptor's annotations."""

    payload: bytes
    annotations: Mapping[str, str]
    media_type: str = SIMPLE_SIGNING_MEDIA_TYPE


def signature_tag(digest: str) -> str:
    """The legacy tag cosign stores an artifact's signatures under: ``sha256-<hex>.sig``.

    Raises ValueError for anything but a lower-case ``sha256:``/``sha512:`` digest.
    """
    return f"{_checked_digest(digest).replace(':', '-')}.sig"


def load_public_keys(paths: Iterable[str | Path]) -> tuple[CosignPublicKey, ...]:
    """Read PEM public keys (ECDSA P-256/P-384, RSA >= 2048 bits, Ed25519) for ``cosign_keys``.

    Raises ConfigError naming the file when it cannot be read, is not a PEM public key or is of another type,
    and when no file is given at all. The same key listed twice is kept once.
    """
    keys: dict[str, CosignPublicKey] = {}
    for path in paths:
        key = _load_public_key(Path(path))
        keys.setdefault(key.fingerprint, key)
    if not keys:
        raise ConfigError("signature: cosign needs at least one file in cosign_keys")
    return tuple(keys.values())


def verify_signature_layers(digest: str, layers: Sequence[SignatureLayer],
                            keys: Sequence[CosignPublicKey]) -> Signer:
    """Return who signed manifest ``digest``: the first layer validly signed by one of ``keys`` for it.

    Raises DigestMismatchError when the only valid signatures sign another digest, NoTrustedSignatureError
    when no layer verifies under a configured key (unknown signer, tampered payload, no layers), and
    MalformedSignatureError when every layer is unusable (bad base64, oversized, wrong media type, or more
    than MAX_LAYERS layers). ValueError if ``digest`` itself is not a digest.
    """
    expected = _checked_digest(digest)
    if len(layers) > MAX_LAYERS:
        raise MalformedSignatureError(f"{len(layers)} signature layers, more than the {MAX_LAYERS} accepted")
    problems: list[str] = []
    mismatch: str | None = None
    for layer in layers:
        try:
            key, payload = _signed_payload(layer, keys)
        except MalformedSignatureError as exc:
            problems.append(exc.message)
            continue
        if key is None:
            continue
        signed = _signed_digest(payload)
        if signed == expected:
            return Signer(dn=f"cosign key {key.path}", ca="", fingerprint=key.fingerprint)
        mismatch = signed
    raise _refusal(expected, len(layers), problems, mismatch)


def _refusal(expected: str, count: int, problems: list[str], mismatch: str | None) -> SignatureError:
    """The most telling error: a moved signature, then all layers unusable, then no configured signer."""
    if mismatch is not None:
        return DigestMismatchError(f"cosign signature by a configured key is for {mismatch}, not {expected}")
    if problems and len(problems) == count:
        return MalformedSignatureError(f"no usable cosign signature: {problems[0]}")
    detail = f" ({len(problems)} malformed)" if problems else ""
    return NoTrustedSignatureError(
        f"no valid cosign signature by a configured key among {count} for {expected}{detail}",
        hint="sign the artifact with a key listed in cosign_keys, or add the signer's public key")


def _signed_payload(layer: SignatureLayer,
                    keys: Sequence[CosignPublicKey]) -> tuple[CosignPublicKey | None, bytes]:
    """The key that signed this layer (None if none did) and its payload; MalformedSignatureError if unusable."""
    if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE:
        raise MalformedSignatureError(f"layer media type {layer.media_type!r} is not cosign simple signing")
    if len(layer.payload) > MAX_PAYLOAD_BYTES:
        raise MalformedSignatureError(f"payload of {len(layer.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    signature = _decoded_signature(layer.annotations.get(SIGNATURE_ANNOTATION))
    for key in keys:
        if verifies(key.key, signature, layer.payload):
            return key, layer.payload
    return None, layer.payload


def _decoded_signature(text: str | None) -> bytes:
    if not text:
        raise MalformedSignatureError(f"layer has no {SIGNATURE_ANNOTATION} annotation")
    if len(text) > MAX_SIGNATURE_CHARS:
        raise MalformedSignatureError(f"signature annotation of {len(text)} characters is too long")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignatureError("signature annotation is not valid base64") from None


def verifies(key: PublicKeyType, signature: bytes, payload: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over ``payload``, with the hashes cosign signs with for that key type.
    Raises nothing."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            # Pure Ed25519 (cosign < 2.6, containers/image, DSSE by sigstore's convention). cosign >= 2.6
            # defaults to Ed25519ph, which `cryptography` cannot verify: such signatures are refused, not misread.
            key.verify(signature, payload)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            return _verifies_ecdsa(key, signature, payload)
    except InvalidSignature:
        return False
    return True


def _verifies_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, payload: bytes) -> bool:
    # cosign hashed with SHA-256 for every curve until 2.6; since then a P-384 key signs with SHA-384.
    # Both are collision resistant, so accepting either adds no forgery route.
    algorithms: list[hashes.HashAlgorithm] = [hashes.SHA256()]
    if isinstance(key.curve, ec.SECP384R1):
        algorithms.append(hashes.SHA384())
    for algorithm in algorithms:
        try:
            key.verify(signature, payload, ec.ECDSA(algorithm))
        except InvalidSignature:
            continue
        return True
    return False


def _signed_digest(payload: bytes) -> str:
    """The manifest digest a verified simple-signing payload names; MalformedSignatureError if it is not one."""
    try:
        document = json.loads(payload)
        critical = document["critical"]
        kind, digest = critical["type"], critical["image"]["docker-manifest-digest"]
    except (ValueError, TypeError, KeyError):
        raise MalformedSignatureError("signed payload is not a cosign simple-signing document") from None
    # Unknown critical fields must be refused (simple-signing rule): they may restrict what was signed.
    if not isinstance(critical, dict) or set(critical) - _CRITICAL_KEYS:
        raise MalformedSignatureError("signed payload has unknown critical fields")
    if kind != PAYLOAD_TYPE:
        raise MalformedSignatureError(f"signed payload has type {kind!r}, not {PAYLOAD_TYPE!r}")
    if not isinstance(digest, str):
        raise MalformedSignatureError("signed payload's docker-manifest-digest is not a string")
    return digest


def _checked_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256/sha512 manifest digest: {digest!r}")
    return digest


def _load_public_key(path: Path) -> CosignPublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read cosign key: {exc.strerror}", subject=str(path)) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError("not a PEM public key", subject=str(path),
                          hint="give the cosign.pub written by `cosign generate-key-pair`") from None
    usable = _usable_key(key, path)
    der = usable.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return CosignPublicKey(path=str(path), key=usable, fingerprint="sha256:" + hashlib.sha256(der).hexdigest())


def _usable_key(key: object, path: Path) -> PublicKeyType:
    """The key if cosign signs with its type, else ConfigError saying which type it is."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            return key
        kind = f"ECDSA {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= 2048:
            return key
        kind = f"RSA {key.key_size} bits"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        return key
    else:
        kind = type(key).__name__
    raise ConfigError(f"unsupported cosign key type ({kind})", subject=str(path),
                      hint="use an ECDSA P-256/P-384, RSA (>= 2048 bits) or Ed25519 public key")
