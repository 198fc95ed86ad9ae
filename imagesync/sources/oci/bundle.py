"""Verify cosign 3's signatures: Sigstore bundles (v0.3) pushed as OCI 1.1 referrers, against configured keys.

Pure: bundle bytes in, a :class:`~imagesync.model.Signer` or a SignatureError out. The format, as cosign >= 3.0
writes it by default (``--new-bundle-format``; sources in /work/notes/cosign-formats.md): the key signs, as a
DSSE envelope of payload type ``application/vnd.in-toto+json``, an in-toto v1 statement whose subject is the
manifest digest and whose predicate type is :data:`SIGN_PREDICATE_TYPE`. The signature covers DSSE's
pre-authentication encoding (:func:`pae`), never the payload alone. The bundle JSON carries the envelope and the
verification material: ``publicKey`` (a key hint) for key-based signing, a certificate when keyless.

An artifact passes when one bundle's envelope verifies under a configured key and its statement, parsed only
after that, has the cosign signing predicate type and a subject with this very manifest digest. Stricter than
``cosign verify``, which takes any predicate type: a signed SBOM or provenance attestation is not an approval
to sync. Like the legacy path with a key, the Rekor entry and timestamps in the bundle are not checked; the key
hint is unauthenticated and ignored. Keyless bundles are refused until an identity-based verifier exists (see
the design note in :mod:`imagesync.sources.oci.cosign`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from imagesync.errors import MalformedSignatureError, SignatureError
from imagesync.model import Signer
from imagesync.sources.oci.cosign import (
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_CHARS,
    SIGSTORE_BUNDLE_ARTIFACT_TYPE,
    CosignPublicKey,
    DigestMismatchError,
    NoTrustedSignatureError,
    verifies,
)

BUNDLE_MEDIA_TYPE = SIGSTORE_BUNDLE_ARTIFACT_TYPE
# protobuf-specs lets a v0.3 bundle name its version either way; cosign writes the first.
BUNDLE_MEDIA_TYPES = frozenset({BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"})
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"

# A key-based bundle with a Rekor entry is 3-5 KiB and a keyless one with timestamps about 10 KiB; the caps only
# bound the memory and CPU a hostile referrer can cost. cosign writes one subject; sigstore-go allows 1024.
MAX_BUNDLE_BYTES = 128 * 1024
MAX_BUNDLES = 16
MAX_SUBJECTS = 64


class KeylessBundleError(NoTrustedSignatureError):
    """A bundle signed keyless (Fulcio certificate): not verifiable with configured keys."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the key actually signs. Raises nothing."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def verify_bundles(digest: str, bundles: Sequence[bytes], keys: Sequence[CosignPublicKey]) -> Signer:
    """Who signed manifest ``digest``: the first of ``bundles`` (raw bundle JSON) that verifies for it.

    Raises DigestMismatchError when the only valid ones sign another digest, KeylessBundleError when every
    bundle is keyless, NoTrustedSignatureError when none verifies under a configured key (or there are none),
    MalformedSignatureError when every bundle is unusable or there are more than MAX_BUNDLES.
    """
    if len(bundles) > MAX_BUNDLES:
        raise MalformedSignatureError(f"{len(bundles)} Sigstore bundles, more than the {MAX_BUNDLES} accepted")
    refusals: list[SignatureError] = []
    for data in bundles:
        try:
            return verify_bundle(data, digest, keys)
        except SignatureError as exc:
            refusals.append(exc)
    raise _refusal(digest, refusals)


def verify_bundle(data: bytes, digest: str, keys: Sequence[CosignPublicKey]) -> Signer:
    """Who signed manifest ``digest`` with this one bundle, among ``keys``.

    Raises KeylessBundleError for a certificate instead of a key, NoTrustedSignatureError when no configured key
    made the signature (unknown signer, tampered payload), MalformedSignatureError for anything not a key-based
    v0.3 bundle with one in-toto DSSE signature or for a signed statement that is not cosign's signing statement,
    and DigestMismatchError when it signs another digest.
    """
    envelope = _envelope(_bundle(data))
    payload = _b64(envelope.get("payload"), MAX_PAYLOAD_BYTES * 4 // 3 + 4, "DSSE payload")
    signatures = envelope.get("signatures")
    # protobuf-specs: a bundle's envelope has exactly one signature, so there is nothing to choose between.
    if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise MalformedSignatureError("DSSE envelope must hold exactly one signature")
    signature = _b64(signatures[0].get("sig"), MAX_SIGNATURE_CHARS, "DSSE signature")
    signed = pae(INTOTO_PAYLOAD_TYPE, payload)
    key = next((key for key in keys if verifies(key.key, signature, signed)), None)
    if key is None:
        raise NoTrustedSignatureError(f"no valid signature by a configured key in the Sigstore bundle for {digest}",
                                      hint="sign with a key listed in cosign_keys, or add the signer's public key")
    _check_statement(payload, digest)
    return Signer(dn=f"cosign key {key.path}", ca="", fingerprint=key.fingerprint)


def _bundle(data: bytes) -> Mapping[str, Any]:
    """The parsed bundle if it is a key-based v0.3 one; MalformedSignatureError or KeylessBundleError if not."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise MalformedSignatureError(f"Sigstore bundle of {len(data)} bytes exceeds {MAX_BUNDLE_BYTES}")
    document = _json_object(data, "Sigstore bundle")
    if document.get("mediaType") not in BUNDLE_MEDIA_TYPES:
        raise MalformedSignatureError(f"bundle media type {document.get('mediaType')!r} is not {BUNDLE_MEDIA_TYPE}")
    material = document.get("verificationMaterial")
    if not isinstance(material, dict):
        raise MalformedSignatureError("Sigstore bundle has no verificationMaterial")
    if "certificate" in material or "x509CertificateChain" in material:
        raise KeylessBundleError("keyless signatures are not supported yet (Sigstore bundle with a certificate)",
                                 hint="sign with `cosign sign --key` and list the public key in cosign_keys")
    if not isinstance(material.get("publicKey"), dict):
        raise MalformedSignatureError("Sigstore bundle names no public key")
    return document


def _envelope(document: Mapping[str, Any]) -> Mapping[str, Any]:
    envelope = document.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise MalformedSignatureError("Sigstore bundle holds no DSSE envelope (cosign signs images as DSSE)")
    if envelope.get("payloadType") != INTOTO_PAYLOAD_TYPE:
        raise MalformedSignatureError(f"DSSE payload type {envelope.get('payloadType')!r} is not in-toto")
    return envelope


def _check_statement(payload: bytes, digest: str) -> None:
    """Raise unless the signed statement is cosign's signing statement naming ``digest`` among its subjects."""
    statement = _json_object(payload, "signed in-toto statement")
    if statement.get("_type") != STATEMENT_TYPE:
        raise MalformedSignatureError(f"signed statement has _type {statement.get('_type')!r}, not {STATEMENT_TYPE}")
    if statement.get("predicateType") != SIGN_PREDICATE_TYPE:
        raise MalformedSignatureError(f"signed statement has predicate type {statement.get('predicateType')!r}, "
                                      f"not {SIGN_PREDICATE_TYPE}")
    signed = _subject_digests(statement.get("subject"))
    if digest not in signed:
        raise DigestMismatchError(f"Sigstore bundle by a configured key is for {', '.join(signed) or 'nothing'}, "
                                  f"not {digest}")


def _subject_digests(subjects: object) -> list[str]:
    """The subjects' digests as ``alg:hex``; MalformedSignatureError when the list is not one."""
    if not isinstance(subjects, list) or not 0 < len(subjects) <= MAX_SUBJECTS:
        raise MalformedSignatureError(f"signed statement needs 1 to {MAX_SUBJECTS} subjects")
    found: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
            raise MalformedSignatureError("signed statement has a subject without a digest map")
        # Compared as written: a digest in another case or algorithm is simply not this manifest's.
        found += [f"{algorithm}:{value}" for algorithm, value in digests.items()]
    return found


def _json_object(data: bytes, what: str) -> Mapping[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedSignatureError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedSignatureError(f"{what} is not a JSON object")
    return document


def _b64(text: object, cap: int, what: str) -> bytes:
    """Decode protobuf JSON ``bytes`` (standard base64); the cap is checked before decoding."""
    if not isinstance(text, str) or not text:
        raise MalformedSignatureError(f"{what} is missing")
    if len(text) > cap:
        raise MalformedSignatureError(f"{what} of {len(text)} characters is too long")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignatureError(f"{what} is not valid base64") from None


def _refusal(digest: str, refusals: list[SignatureError]) -> SignatureError:
    """The most telling refusal: a moved signature, an unknown signer, keyless, then malformed."""
    if not refusals:
        return NoTrustedSignatureError(f"no Sigstore bundle for {digest}")
    chosen = min(refusals, key=_rank)
    if len(refusals) == 1:
        return chosen
    return type(chosen)(f"{chosen.message} (and {len(refusals) - 1} more bundles refused)", hint=chosen.hint)


def _rank(exc: SignatureError) -> int:
    # A key-based bundle by a stranger says more than a keyless one, which says more than garbage.
    if isinstance(exc, DigestMismatchError):
        return 0
    if isinstance(exc, KeylessBundleError):
        return 2
    return 1 if isinstance(exc, NoTrustedSignatureError) else 3
