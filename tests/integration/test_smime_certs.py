"""Hostile embedded certificates and signer keys imagesync cannot use: each ends as a one-line SignatureError.

The certificates inside a signed list are not covered by its content signature: anyone on the path can change
them, so their parsing is untrusted input like the rest of the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed448

from imagesync.errors import MalformedSignatureError, SignatureError, UntrustedSignerError
from imagesync.model import VerifiedContent
from imagesync.sources.hepix import smime
from imagesync.sources.hepix.castore import CAStore
from tests.support import asn1tree
from tests.support.asn1tree import Node
from tests.support.hostile import (
    OID_KEY_USAGE,
    OID_RSA_ENCRYPTION,
    OID_UNKNOWN,
    change_certificate,
    cms_of,
    extension_value,
    oid_node,
)
from tests.support.samples import BASE, TestPKI, list_for, name, openssl_sign

FORMS = ["detached", "detached_text", "opaque", "pem", "der", "ber_stream", "two_signers", "with_intermediate"]


def verify(blob: bytes, pki: TestPKI) -> VerifiedContent:
    return smime.verify(blob, CAStore.load(pki.ca_dir, "if_present"), now=dt.datetime.now(dt.UTC))


def certificate_count(blob: bytes) -> int:
    return len(asn1tree.certificates(asn1tree.parse(cms_of(blob))))


def wrong_key_usage_tag(cert: Node) -> None:
    value = extension_value(cert, OID_KEY_USAGE)
    # KeyUsage is a BIT STRING; a NULL tag keeps every length right, so only the extension parser can object.
    value.value = b"\x05" + value.value[1:]


def unknown_key_algorithm(cert: Node) -> None:
    oid_node(cert, OID_RSA_ENCRYPTION).value = OID_UNKNOWN


@pytest.mark.parametrize("form", FORMS)
def test_unparseable_extension_in_any_embedded_certificate(pki: TestPKI, form: str) -> None:
    blob = openssl_sign(form, list_for(pki.valid), pki=pki)
    assert verify(blob, pki).content
    for index in range(certificate_count(blob)):
        with pytest.raises(MalformedSignatureError, match=r"embedded certificate .*cannot be parsed") as caught:
            verify(change_certificate(blob, wrong_key_usage_tag, index), pki)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("form", ["detached", "der", "ber_stream", "two_signers", "with_intermediate"])
def test_unknown_public_key_algorithm_in_any_embedded_certificate(pki: TestPKI, form: str) -> None:
    blob = openssl_sign(form, list_for(pki.valid), pki=pki)
    for index in range(certificate_count(blob)):
        with pytest.raises(UntrustedSignerError, match="unsupported public key") as caught:
            verify(change_certificate(blob, unknown_key_algorithm, index), pki)
        assert "\n" not in str(caught.value)


def _leaf_with_key(pki: TestPKI, key: dsa.DSAPrivateKey | ed448.Ed448PrivateKey, cn: str) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(name(*BASE, ("O", "Hosts"), ("CN", cn))).issuer_name(pki.grid.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(pki.grid.cred.key, hashes.SHA256()))


def invalid_version(cert: Node) -> None:
    # tbsCertificate [0] EXPLICIT INTEGER: v3 is 2; cryptography raises x509.InvalidVersion, not a ValueError.
    version = cert.children[0].children[0].children[0]  # type: ignore[index]
    version.value = b"\x42"


def test_invalid_certificate_version_found_by_the_fuzzer(pki: TestPKI) -> None:
    blob = change_certificate(openssl_sign("detached", list_for(pki.valid), pki=pki), invalid_version)
    with pytest.raises(MalformedSignatureError, match="embedded certificate number 1 cannot be parsed"):
        verify(blob, pki)


def test_dsa_signer_is_refused_by_name(pki: TestPKI, tmp_path: Path) -> None:
    key = dsa.generate_private_key(2048)
    cert_path, key_path = tmp_path / "dsa.pem", tmp_path / "dsa.key"
    cert_path.write_bytes(_leaf_with_key(pki, key, "dsa.example.org").public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    blob = subprocess.run(["openssl", "cms", "-sign", "-signer", cert_path, "-inkey", key_path, "-nodetach",
                           "-outform", "DER"], input=list_for(pki.valid), capture_output=True, check=True).stdout
    with pytest.raises(UntrustedSignerError, match=r"dsa\.example\.org has a key of type DSA"):
        verify(blob, pki)


def _ed448_signed(pki: TestPKI, content: bytes) -> bytes:
    # openssl 3.0's cms cannot sign with EdDSA keys; RFC 8419 SignedData built by hand, signed for real.
    key = ed448.Ed448PrivateKey.generate()
    cert = asn1_x509.Certificate.load(_leaf_with_key(pki, key, "ed448.example.org").public_bytes(
        serialization.Encoding.DER))
    attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha512(content).digest()]}),
    ])
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
            {"issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha512"}),
        "signed_attrs": attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "ed448"}),
        "signature": key.sign(attrs.dump()),
    })
    signed = cms.SignedData({
        "version": "v1", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha512"})],
        "encap_content_info": {"content_type": "data", "content": content},
        "certificates": [cert], "signer_infos": [signer],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def test_ed448_signer_is_refused_by_name(pki: TestPKI) -> None:
    with pytest.raises(UntrustedSignerError, match=r"ed448\.example\.org has a key of type Ed448"):
        verify(_ed448_signed(pki, list_for(pki.valid)), pki)


def test_cli_verify_reports_a_damaged_certificate_as_not_verified(pki: TestPKI, tmp_path: Path) -> None:
    path = tmp_path / "image.list"
    path.write_bytes(change_certificate(openssl_sign("detached", list_for(pki.valid), pki=pki), wrong_key_usage_tag))
    env = {**os.environ, "IMAGESYNC_CONFIG": str(tmp_path / "absent.yaml")}
    result = subprocess.run([sys.executable, "-m", "imagesync", "verify", str(path), "--ca-dir", str(pki.ca_dir)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unexpected error" not in result.stdout + result.stderr
    assert "NOT VERIFIED" in result.stdout and "cannot be parsed" in result.stdout


def test_damaged_certificates_never_raise_outside_the_contract(pki: TestPKI) -> None:
    # Every single-byte change inside the signer's certificate ends as a SignatureError, never anything else.
    blob = openssl_sign("der", list_for(pki.valid), pki=pki)
    cert = asn1tree.encode(asn1tree.certificates(asn1tree.parse(blob))[0])
    offset = blob.index(cert)
    for position in range(offset, offset + len(cert), 7):
        damaged = bytearray(blob)
        damaged[position] ^= 0x41
        try:
            verify(bytes(damaged), pki)
        except SignatureError:
            continue


def test_ca_store_keeps_its_contract_for_a_certificate_that_breaks_late(pki: TestPKI) -> None:
    # cryptography loads this certificate fine and fails only when keyUsage is first read, inside validate().
    blob = change_certificate(openssl_sign("der", list_for(pki.valid), pki=pki), wrong_key_usage_tag)
    leaf = x509.load_der_x509_certificate(asn1tree.encode(asn1tree.certificates(asn1tree.parse(blob))[0]))
    store = CAStore.load(pki.ca_dir, "if_present")
    with pytest.raises(UntrustedSignerError, match="cannot be used"):
        store.validate(leaf, [], dt.datetime.now(dt.UTC))


def test_ca_directory_skips_a_certificate_with_an_invalid_version(pki: TestPKI, tmp_path: Path) -> None:
    directory = tmp_path / "certificates"
    directory.mkdir()
    for path in pki.ca_dir.iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    tree = asn1tree.parse(pki.root.cert.public_bytes(serialization.Encoding.DER))
    invalid_version(tree)
    (directory / "0badc0de.0").write_bytes(asn1tree.encode(tree))
    store = CAStore.load(directory, "if_present")
    assert len(store.anchors) == 2  # root and grid; the broken copy is skipped with a warning
