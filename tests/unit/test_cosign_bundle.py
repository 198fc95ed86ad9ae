"""imagesync.sources.oci.bundle: cosign 3's Sigstore bundles verify under a configured key; every bad one is refused.

The bundles come from our own signer (imagesync.demo.cosign); no bundle written by the real cosign 3 is at hand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagesync.demo.cosign import (
    PrivateKey,
    bundle_referrer,
    new_private_key,
    sign,
    sigstore_bundle,
    statement_for,
)
from imagesync.errors import MalformedSignatureError
from imagesync.sources.oci import bundle, cosign
from imagesync.sources.oci.bundle import KeylessBundleError
from imagesync.sources.oci.cosign import DigestMismatchError, NoTrustedSignatureError
from tests.support.cosign_keys import DIGEST, OTHER_DIGEST, keys_for


def signed(key: PrivateKey, digest: str = DIGEST) -> bytes:
    return sigstore_bundle(key, statement_for(digest))


def edited(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(data)
    edit(document)
    return json.dumps(document).encode()


def test_pae_is_dsse_v1() -> None:
    assert bundle.pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    assert bundle.pae("t", "é".encode()) == "DSSEv1 1 t 2 é".encode()  # lengths in bytes, not characters


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_a_valid_bundle_verifies_for_each_key_type(tmp_path: Path, kind: str) -> None:
    key = new_private_key(kind)
    keys = keys_for(tmp_path, new_private_key(), key)
    signer = bundle.verify_bundle(signed(key), DIGEST, keys)
    assert signer.fingerprint == keys[1].fingerprint and signer.dn == f"cosign key {keys[1].path}"


def test_the_signature_covers_pae_not_the_bare_payload(tmp_path: Path) -> None:
    key = new_private_key()
    statement = statement_for(DIGEST)
    bare = edited(signed(key), lambda d: d["dsseEnvelope"]["signatures"][0].update(sig=sign(key, statement)))
    with pytest.raises(NoTrustedSignatureError):
        bundle.verify_bundle(bare, DIGEST, keys_for(tmp_path, key))


def test_a_tampered_payload_is_refused(tmp_path: Path) -> None:
    key = new_private_key()
    # Signed for OTHER_DIGEST, then the statement swapped for one naming DIGEST: the signature no longer fits.
    tampered = sigstore_bundle(key, statement_for(DIGEST), signed=statement_for(OTHER_DIGEST))
    with pytest.raises(NoTrustedSignatureError, match="no valid signature by a configured key"):
        bundle.verify_bundle(tampered, DIGEST, keys_for(tmp_path, key))


def test_a_bundle_for_another_digest_is_refused(tmp_path: Path) -> None:
    key = new_private_key()
    with pytest.raises(DigestMismatchError, match=f"is for {OTHER_DIGEST}, not {DIGEST}"):
        bundle.verify_bundle(signed(key, OTHER_DIGEST), DIGEST, keys_for(tmp_path, key))


def test_any_subject_may_name_the_digest(tmp_path: Path) -> None:
    key = new_private_key()
    statement = json.loads(statement_for(OTHER_DIGEST))
    statement["subject"].append({"name": "disk", "digest": {"sha256": DIGEST.split(":")[1]}})
    data = sigstore_bundle(key, json.dumps(statement).encode())
    assert bundle.verify_bundle(data, DIGEST, keys_for(tmp_path, key))


@pytest.mark.parametrize("predicate", ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document", ""])
def test_a_signed_statement_of_another_predicate_type_is_refused(tmp_path: Path, predicate: str) -> None:
    key = new_private_key()
    with pytest.raises(MalformedSignatureError, match="predicate type"):
        bundle.verify_bundle(sigstore_bundle(key, statement_for(DIGEST, predicate)), DIGEST, keys_for(tmp_path, key))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
    (lambda s: s.update(subject=[]), "1 to 64 subjects"),
    (lambda s: s.update(subject=[{"name": "x"}]), "without a digest map"),
    (lambda s: s.update(subject=[{"digest": {"sha256": 7}}]), "without a digest map"),
])
def test_a_signed_but_malformed_statement_is_refused(tmp_path: Path, edit: Callable[[dict[str, Any]], None],
                                                     message: str) -> None:
    key = new_private_key()
    statement = json.loads(statement_for(DIGEST))
    edit(statement)
    with pytest.raises(MalformedSignatureError, match=message):
        bundle.verify_bundle(sigstore_bundle(key, json.dumps(statement).encode()), DIGEST, keys_for(tmp_path, key))


def test_a_bundle_by_an_unknown_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoTrustedSignatureError, match=f"no valid signature by a configured key .* for {DIGEST}"):
        bundle.verify_bundle(signed(new_private_key()), DIGEST, keys_for(tmp_path, new_private_key()))


def test_a_keyless_bundle_is_refused_with_a_clear_line(tmp_path: Path) -> None:
    key = new_private_key()
    keyless = edited(signed(key), lambda d: d.update(verificationMaterial={"certificate": {"rawBytes": "MIIB"}}))
    with pytest.raises(KeylessBundleError, match="keyless signatures are not supported yet"):
        bundle.verify_bundle(keyless, DIGEST, keys_for(tmp_path, key))


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff{not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (edited(signed(new_private_key()), lambda d: d.update(mediaType="application/json")), "bundle media type"),
    (edited(signed(new_private_key()), lambda d: d.pop("verificationMaterial")), "no verificationMaterial"),
    (edited(signed(new_private_key()), lambda d: d.update(verificationMaterial={})), "names no public key"),
    (edited(signed(new_private_key()), lambda d: d.pop("dsseEnvelope")), "no DSSE envelope"),
    (edited(signed(new_private_key()), lambda d: d["dsseEnvelope"].update(payloadType="text/plain")), "not in-toto"),
    (edited(signed(new_private_key()), lambda d: d["dsseEnvelope"].update(payload="%%%")), "not valid base64"),
    (edited(signed(new_private_key()), lambda d: d["dsseEnvelope"]["signatures"].append({"sig": "AA=="})),
     "exactly one signature"),
    (edited(signed(new_private_key()), lambda d: d["dsseEnvelope"].update(signatures=[])), "exactly one signature"),
    (edited(signed(new_private_key()), lambda d: d["dsseEnvelope"]["signatures"][0].pop("sig")), "missing"),
])
def test_a_malformed_bundle_is_refused(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(MalformedSignatureError, match=message):
        bundle.verify_bundle(data, DIGEST, keys_for(tmp_path, new_private_key()))


def test_an_oversized_bundle_or_payload_is_refused_even_if_signed(tmp_path: Path) -> None:
    key = new_private_key()
    keys = keys_for(tmp_path, key)
    padded = signed(key) + b" " * bundle.MAX_BUNDLE_BYTES
    with pytest.raises(MalformedSignatureError, match="exceeds"):
        bundle.verify_bundle(padded, DIGEST, keys)
    statement = statement_for(DIGEST)[:-1] + b',"pad":"' + b"x" * cosign.MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(MalformedSignatureError, match=r"DSSE payload of .* too long"):
        bundle.verify_bundle(sigstore_bundle(key, statement), DIGEST, keys)


def test_one_valid_bundle_among_several_is_enough_and_refusals_rank(tmp_path: Path) -> None:
    key, stranger = new_private_key(), new_private_key()
    keys = keys_for(tmp_path, key)
    keyless = edited(signed(key), lambda d: d.update(verificationMaterial={"certificate": {"rawBytes": "MIIB"}}))
    assert bundle.verify_bundles(DIGEST, [b"junk", keyless, signed(stranger), signed(key)], keys)
    with pytest.raises(DigestMismatchError, match=r"\(and 2 more bundles refused\)"):
        bundle.verify_bundles(DIGEST, [keyless, signed(key, OTHER_DIGEST), signed(stranger)], keys)
    with pytest.raises(NoTrustedSignatureError) as caught:
        bundle.verify_bundles(DIGEST, [keyless, signed(stranger)], keys)
    assert not isinstance(caught.value, KeylessBundleError)  # the stranger's key-based bundle says more
    with pytest.raises(KeylessBundleError):
        bundle.verify_bundles(DIGEST, [b"junk", keyless], keys)
    with pytest.raises(NoTrustedSignatureError, match="no Sigstore bundle"):
        bundle.verify_bundles(DIGEST, [], keys)
    with pytest.raises(MalformedSignatureError, match="more than the 16"):
        bundle.verify_bundles(DIGEST, [signed(key)] * 17, keys)


def test_bundle_referrer_points_at_its_blobs(tmp_path: Path) -> None:
    key = new_private_key()
    data = signed(key)
    made = bundle_referrer(data, {"mediaType": "x", "digest": DIGEST, "size": 1})
    document = json.loads(made.manifest)
    assert document["artifactType"] == bundle.BUNDLE_MEDIA_TYPE == cosign.SIGSTORE_BUNDLE_ARTIFACT_TYPE
    assert made.digest == "sha256:" + hashlib.sha256(made.manifest).hexdigest()
    (layer,) = document["layers"]
    assert layer["mediaType"] == bundle.BUNDLE_MEDIA_TYPE and made.blobs[layer["digest"]] == data
    assert made.blobs[document["config"]["digest"]] == b"{}"
    assert bundle.verify_bundle(made.blobs[layer["digest"]], DIGEST, keys_for(tmp_path, key))
