"""imagesync.sources.oci.cosign: real cosign signatures verify; every kind of bad signature is refused."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from imagesync.demo.cosign import PrivateKey, new_private_key, payload_for, public_key_pem, sig_manifest
from imagesync.demo.cosign import signature_layer as layer
from imagesync.errors import ConfigError, MalformedSignatureError
from imagesync.sources.oci import cosign
from imagesync.sources.oci.cosign import (
    SIGNATURE_ANNOTATION,
    DigestMismatchError,
    NoTrustedSignatureError,
    SignatureLayer,
)
from tests.support import cosign_fixtures
from tests.support.cosign_keys import DIGEST, OTHER_DIGEST, keys_for

# --- real cosign signatures (containers/image's cosign-created fixtures) ---------------------------------------

@pytest.fixture
def real() -> Path:
    found = cosign_fixtures.fixtures_dir()
    if found is None:
        pytest.skip("real cosign fixtures absent: see tests/support/cosign_fixtures.py")
    return found


def manifest_digest(directory: Path) -> str:
    return "sha256:" + hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()


@pytest.mark.parametrize(("image", "public_key"), [
    ("dir-img-cosign-valid", "cosign.pub"),
    ("dir-img-cosign-key-rekor-valid", "cosign2.pub"),  # carries a Rekor bundle annotation, unused with a key
])
def test_real_cosign_signature_verifies(real: Path, image: str, public_key: str) -> None:
    keys = cosign.load_public_keys([real / public_key])
    signature = cosign_fixtures.read_signature(real / image / "signature-1")
    signer = cosign.verify_signature_layers(manifest_digest(real / image), [signature], keys)
    assert signer.fingerprint == keys[0].fingerprint
    assert signer.dn == f"cosign key {real / public_key}"


def test_real_cosign_signature_by_the_other_key_is_refused(real: Path) -> None:
    keys = cosign.load_public_keys([real / "cosign2.pub"])
    signature = cosign_fixtures.read_signature(real / "dir-img-cosign-valid" / "signature-1")
    with pytest.raises(NoTrustedSignatureError):
        cosign.verify_signature_layers(manifest_digest(real / "dir-img-cosign-valid"), [signature], keys)


def test_real_cosign_signature_for_another_artifact_is_refused(real: Path) -> None:
    keys = cosign.load_public_keys([real / "cosign.pub"])
    signature = cosign_fixtures.read_signature(real / "dir-img-cosign-valid" / "signature-1")
    with pytest.raises(DigestMismatchError, match="sha256:634a8f35"):
        cosign.verify_signature_layers(manifest_digest(real / "dir-img-cosign-key-rekor-valid"), [signature], keys)


def test_real_unknown_and_keyless_signatures_beside_a_valid_one(real: Path) -> None:
    keys = cosign.load_public_keys([real / "cosign.pub", real / "cosign2.pub"])
    unknown = cosign_fixtures.read_signature(real / "unknown-cosign-key.signature")
    keyless = cosign_fixtures.read_signature(real / "dir-img-cosign-fulcio-rekor-valid" / "signature-1")
    valid = cosign_fixtures.read_signature(real / "dir-img-cosign-valid" / "signature-1")
    digest = manifest_digest(real / "dir-img-cosign-valid")
    with pytest.raises(NoTrustedSignatureError):
        cosign.verify_signature_layers(digest, [unknown, keyless], keys)
    assert cosign.verify_signature_layers(digest, [unknown, keyless, valid], keys).fingerprint == keys[0].fingerprint


def test_real_cosign_payload_tampered_is_refused(real: Path) -> None:
    keys = cosign.load_public_keys([real / "cosign.pub"])
    signature = cosign_fixtures.read_signature(real / "dir-img-cosign-valid" / "signature-1")
    # Same digest, one byte of the identity changed: the signature no longer covers the payload.
    tampered = SignatureLayer(payload=signature.payload.replace(b"192.168", b"192.169"),
                              annotations=signature.annotations)
    with pytest.raises(NoTrustedSignatureError):
        cosign.verify_signature_layers(manifest_digest(real / "dir-img-cosign-valid"), [tampered], keys)


# --- our own signer: key types, and every refusal ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_our_signature_verifies_for_each_key_type(tmp_path: Path, kind: str) -> None:
    key = new_private_key(kind)
    keys = keys_for(tmp_path, key)
    assert cosign.verify_signature_layers(DIGEST, [layer(key, DIGEST)], keys).fingerprint == keys[0].fingerprint


def test_p384_signature_hashed_with_sha384_verifies(tmp_path: Path) -> None:
    # What cosign >= 2.6 signs with a P-384 key.
    from cryptography.hazmat.primitives import hashes
    key = ec.generate_private_key(ec.SECP384R1())
    payload = payload_for(DIGEST)
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA384()))).decode()
    candidate = SignatureLayer(payload=payload, annotations={SIGNATURE_ANNOTATION: signature})
    assert cosign.verify_signature_layers(DIGEST, [candidate], keys_for(tmp_path, key))


def test_signature_by_an_unconfigured_key_is_refused(tmp_path: Path) -> None:
    configured, stranger = new_private_key(), new_private_key()
    with pytest.raises(NoTrustedSignatureError, match="no valid cosign signature by a configured key among 1"):
        cosign.verify_signature_layers(DIGEST, [layer(stranger, DIGEST)], keys_for(tmp_path, configured))


def test_valid_signature_for_another_digest_is_refused(tmp_path: Path) -> None:
    key = new_private_key()
    with pytest.raises(DigestMismatchError, match=f"is for {OTHER_DIGEST}, not {DIGEST}"):
        cosign.verify_signature_layers(DIGEST, [layer(key, OTHER_DIGEST)], keys_for(tmp_path, key))


def test_digest_compared_exactly(tmp_path: Path) -> None:
    key = new_private_key()
    with pytest.raises(DigestMismatchError):
        cosign.verify_signature_layers(DIGEST, [layer(key, DIGEST.upper().replace("SHA256", "sha256"))],
                                       keys_for(tmp_path, key))


def test_one_valid_signature_among_several_is_enough(tmp_path: Path) -> None:
    key, stranger = new_private_key(), new_private_key()
    bad_base64 = SignatureLayer(payload=payload_for(DIGEST), annotations={SIGNATURE_ANNOTATION: "%%%"})
    candidates = [layer(stranger, DIGEST), bad_base64, layer(key, OTHER_DIGEST), layer(key, DIGEST)]
    keys = keys_for(tmp_path, new_private_key(), key)
    assert cosign.verify_signature_layers(DIGEST, candidates, keys).fingerprint == keys[1].fingerprint


def test_no_layers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoTrustedSignatureError, match="among 0"):
        cosign.verify_signature_layers(DIGEST, [], keys_for(tmp_path, new_private_key()))


def resigned(key: PrivateKey, edit: Callable[[dict[str, object]], None]) -> SignatureLayer:
    document = json.loads(payload_for(DIGEST))
    edit(document)
    return layer(key, DIGEST, payload=json.dumps(document).encode())


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["critical"].update(type="atomic container signature"), "has type"),
    (lambda d: d["critical"].update(extra="x"), "unknown critical fields"),
    (lambda d: d["critical"]["image"].update({"docker-manifest-digest": 7}), "not a string"),
    (lambda d: d.pop("critical"), "not a cosign simple-signing document"),
])
def test_signed_but_malformed_payload_is_refused(tmp_path: Path, edit: Callable[[dict[str, object]], None],
                                                 message: str) -> None:
    key = new_private_key()
    with pytest.raises(MalformedSignatureError, match=message):
        cosign.verify_signature_layers(DIGEST, [resigned(key, edit)], keys_for(tmp_path, key))


def test_signed_payload_that_is_not_json_is_refused(tmp_path: Path) -> None:
    key = new_private_key()
    with pytest.raises(MalformedSignatureError, match="not a cosign simple-signing document"):
        cosign.verify_signature_layers(DIGEST, [layer(key, DIGEST, payload=b"\xff not json")], keys_for(tmp_path, key))


@pytest.mark.parametrize(("annotations", "message"), [
    ({}, "no dev.cosignproject.cosign/signature annotation"),
    ({SIGNATURE_ANNOTATION: "not base64!"}, "not valid base64"),
    ({SIGNATURE_ANNOTATION: "A" * (cosign.MAX_SIGNATURE_CHARS + 4)}, "too long"),
])
def test_unusable_signature_annotation_is_refused(tmp_path: Path, annotations: dict[str, str], message: str) -> None:
    candidate = SignatureLayer(payload=payload_for(DIGEST), annotations=annotations)
    with pytest.raises(MalformedSignatureError, match=message):
        cosign.verify_signature_layers(DIGEST, [candidate], keys_for(tmp_path, new_private_key()))


def test_oversized_payload_is_refused_even_if_signed(tmp_path: Path) -> None:
    key = new_private_key()
    padded = payload_for(DIGEST) + b" " * cosign.MAX_PAYLOAD_BYTES
    with pytest.raises(MalformedSignatureError, match="exceeds"):
        cosign.verify_signature_layers(DIGEST, [layer(key, DIGEST, payload=padded)], keys_for(tmp_path, key))


def test_other_media_type_is_refused(tmp_path: Path) -> None:
    key = new_private_key()
    signed = layer(key, DIGEST)
    other = SignatureLayer(payload=signed.payload, annotations=signed.annotations, media_type="application/json")
    with pytest.raises(MalformedSignatureError, match="media type"):
        cosign.verify_signature_layers(DIGEST, [other], keys_for(tmp_path, key))


def test_too_many_layers_are_refused(tmp_path: Path) -> None:
    key = new_private_key()
    with pytest.raises(MalformedSignatureError, match="more than the 64"):
        cosign.verify_signature_layers(DIGEST, [layer(key, DIGEST)] * 65, keys_for(tmp_path, key))


def test_bad_digest_argument_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a sha256/sha512"):
        cosign.verify_signature_layers("sha256:ABC", [], keys_for(tmp_path, new_private_key()))


# --- our signer's manifests, tag, key loading ------------------------------------------------------------------------

def test_sig_manifest_blobs_match_descriptors(tmp_path: Path) -> None:
    key = new_private_key()
    built = sig_manifest([layer(key, DIGEST)], subject={"mediaType": "x", "digest": DIGEST, "size": 1})
    document = json.loads(built.manifest)
    assert document["artifactType"] == cosign.SIGNATURE_ARTIFACT_TYPE
    assert built.digest == "sha256:" + hashlib.sha256(built.manifest).hexdigest()
    (descriptor,) = document["layers"]
    fetched = SignatureLayer(payload=built.blobs[descriptor["digest"]], annotations=descriptor["annotations"],
                             media_type=descriptor["mediaType"])
    assert cosign.verify_signature_layers(DIGEST, [fetched], keys_for(tmp_path, key))


def test_signature_tag() -> None:
    assert cosign.signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    with pytest.raises(ValueError):
        cosign.signature_tag("latest")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def pem(key: object) -> bytes:
    assert isinstance(key, dsa.DSAPublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(("data", "message"), [
    (b"hello", "not a PEM public key"),
    (pem(dsa.generate_private_key(2048).public_key()), "unsupported cosign key type"),
    (pem(rsa.generate_private_key(65537, 1024).public_key()), r"RSA 1024 bits"),
    (pem(ec.generate_private_key(ec.SECP521R1()).public_key()), "secp521r1"),
])
def test_unusable_key_file_is_a_config_error_naming_it(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, "bad.pub", data)
    with pytest.raises(ConfigError, match=message) as caught:
        cosign.load_public_keys([path])
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_key_file_and_empty_list_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read cosign key"):
        cosign.load_public_keys([tmp_path / "absent.pub"])
    with pytest.raises(ConfigError, match="at least one"):
        cosign.load_public_keys([])


def test_same_key_twice_is_kept_once(tmp_path: Path) -> None:
    data = public_key_pem(new_private_key())
    assert len(cosign.load_public_keys([write(tmp_path, "a.pub", data), write(tmp_path, "b.pub", data)])) == 1

