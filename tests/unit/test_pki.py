"""The test PKI and the signed samples, checked against the real openssl CLI (the oracle)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from imagesync.demo import pki as p
from tests.support.samples import (
    BASE,
    FORMS,
    MULTIPART_FORMS,
    TestPKI,
    inform_of,
    list_for,
    name,
    openssl_sign,
    oracle_parses,
    oracle_verify,
    tamper,
    tamper_embedded,
)

_KEY = ec.generate_private_key(ec.SECP256R1())


def _self_signed(subject: x509.Name) -> bytes:
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(_KEY.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(_KEY, hashes.SHA256()))
    return p.Credential(cert, _KEY).cert_pem


def _openssl_hash(subject: x509.Name) -> str:
    return subprocess.run(["openssl", "x509", "-hash", "-noout"], input=_self_signed(subject),
                          capture_output=True, check=True).stdout.decode().strip()


def _attr(oid: x509.ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.Name:
    attr = x509.NameAttribute(oid, value, _type=kind) if kind else x509.NameAttribute(oid, value)
    return x509.Name([x509.RelativeDistinguishedName([attr])])


HASH_NAMES = {
    "dc": name(*BASE, ("CN", "Test Grid CA")),
    "mixed_case": name(("DC", "ORG"), ("DC", "ImageSync-Test"), ("CN", "Test GRID Ca")),
    "extra_spaces": name(("O", "  Hosts  "), ("CN", "a   b \t c"), ("OU", " \v\f\r\n")),
    "utf8": name(*BASE, ("CN", "Jöhn Dœ ÄÖÜ ǅ")),
    "slash_plus": name(*BASE, ("CN", "lists/ops+dev=x,y")),
    "multi_valued": name(*BASE, [("OU", "Unit One"), ("UID", "jdoe")], [("CN", "b"), ("CN", "A")]),
    "long": name(*BASE, [("OU", "x" * 60), ("OU", "Y" * 60), ("OU", " z " * 20)]),
    "empty": x509.Name([]),
    "printable": _attr(NameOID.COMMON_NAME, "Printable Name", _ASN1Type.PrintableString),
    "ia5_email": _attr(NameOID.EMAIL_ADDRESS, "Jane.Doe@Example.ORG"),
    "bmp": _attr(NameOID.COMMON_NAME, "BMP Ǆame", _ASN1Type.BMPString),
    "universal": _attr(NameOID.COMMON_NAME, "Universal Ñame", _ASN1Type.UniversalString),
    "t61": _attr(NameOID.COMMON_NAME, "T61 Name", _ASN1Type.T61String),
    "country": x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"), *name(("O", "x"))]),
}


@pytest.mark.parametrize("label", HASH_NAMES)
def test_subject_hash_matches_openssl(label: str) -> None:
    assert p.subject_hash(HASH_NAMES[label]) == _openssl_hash(HASH_NAMES[label])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
                         min_size=1, max_size=2), min_size=1, max_size=3))
def test_subject_hash_matches_openssl_on_random_names(values: list[list[str]]) -> None:
    subject = x509.Name([x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME if i else NameOID.ORGANIZATION_NAME, v) for i, v in enumerate(rdn)])
        for rdn in values])
    assert p.subject_hash(subject) == _openssl_hash(subject)


def test_crl_hash_matches_openssl(pki: TestPKI) -> None:
    crl_files = sorted(pki.ca_dir.glob("*.r0"))
    assert len(crl_files) == 2
    for path in crl_files:
        out = subprocess.run(["openssl", "crl", "-hash", "-noout", "-in", path], capture_output=True, check=True)
        assert out.stdout.decode().strip() + ".r0" == path.name


def test_ca_dir_layout(pki: TestPKI) -> None:
    root, grid = p.subject_hash(pki.root.cert.subject), p.subject_hash(pki.grid.cert.subject)
    expected = [f"{root}.0", f"{grid}.0", f"{root}.r0", f"{grid}.r0"]
    assert sorted(f.name for f in pki.ca_dir.iterdir()) == sorted(expected)
    assert sorted(f.name for f in pki.ca_dir_root_only.iterdir()) == [f"{root}.0", f"{root}.r0"]


def _openssl_verify(ca_dir: Path, cert: Path, *extra: str | Path) -> bool:
    cmd = ["openssl", "verify", "-CApath", ca_dir, *extra, cert]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def test_hash_collision_gets_next_suffix(pki: TestPKI, tmp_path: Path) -> None:
    directory = p.write_ca_dir(tmp_path / "ca", [pki.root.cred, pki.grid.cred, pki.untrusted_ca.cred])
    grid, root = p.subject_hash(pki.grid.cert.subject), p.subject_hash(pki.root.cert.subject)
    assert sorted(f.name for f in directory.iterdir()) == sorted([f"{root}.0", f"{grid}.0", f"{grid}.1"])
    # openssl tries every candidate with the issuer's hash, so both CAs work as anchors.
    assert _openssl_verify(directory, pki.valid.cert_path)
    assert _openssl_verify(directory, pki.untrusted.cert_path)


@pytest.mark.parametrize(("ca_dir", "signer", "args", "expected"), [
    ("ca_dir", "valid", (), True),
    ("ca_dir", "valid", ("-crl_check_all",), True),
    ("ca_dir", "direct_root", ("-crl_check_all",), True),
    ("ca_dir", "revoked", (), True),
    ("ca_dir", "revoked", ("-crl_check",), False),
    ("ca_dir", "untrusted", (), False),
    ("ca_dir", "expired", (), False),
    ("ca_dir", "not_yet_valid", (), False),
    ("ca_dir_nocrl", "valid", (), True),
    ("ca_dir_nocrl", "valid", ("-crl_check",), False),
    ("ca_dir_stale", "valid", (), True),
    ("ca_dir_stale", "valid", ("-crl_check",), False),
    ("ca_dir_root_only", "valid", (), False),
    ("ca_dir_root_only", "direct_root", ("-crl_check",), True),
])
def test_ca_dirs_with_openssl_verify(pki: TestPKI, ca_dir: str, signer: str, args: tuple[str, ...],
                                     expected: bool) -> None:
    assert _openssl_verify(getattr(pki, ca_dir), pki.party(signer).cert_path, *args) is expected


def test_root_only_dir_verifies_with_intermediate_supplied(pki: TestPKI) -> None:
    assert _openssl_verify(pki.ca_dir_root_only, pki.valid.cert_path, "-untrusted", pki.grid.cert_path)


@pytest.fixture(scope="module")
def content(pki: TestPKI) -> bytes:
    return list_for(pki.valid)


def _verify(pki: TestPKI, blob: bytes, form: str, ca_dir: Path | None = None, *, crl_check: bool = True) -> bool:
    return oracle_verify(blob, ca_dir or pki.ca_dir, crl_check=crl_check, binary=form == "detached_binary")


@pytest.mark.parametrize("form", FORMS)
def test_every_form_verifies_with_openssl(pki: TestPKI, content: bytes, form: str) -> None:
    blob = openssl_sign(form, content, pki=pki)
    assert _verify(pki, blob, form) is (form != "nocerts")


@pytest.mark.parametrize("form", [f for f in FORMS if f != "nocerts"])
def test_tampered_form_is_rejected(pki: TestPKI, content: bytes, form: str) -> None:
    blob = openssl_sign(form, content, pki=pki)
    bad = tamper(blob, form)
    assert bad != blob
    assert len(bad) == len(blob)
    assert oracle_parses(bad)
    assert _verify(pki, blob, form)
    assert not _verify(pki, bad, form)


def _signed_data(blob: bytes) -> cms.SignedData:
    der = subprocess.run(["openssl", "cms", "-cmsout", "-outform", "DER", "-inform", inform_of(blob)], input=blob,
                         capture_output=True, check=True).stdout
    signed = cms.ContentInfo.load(der)["content"]
    assert isinstance(signed, cms.SignedData)
    return signed


def _facts(signed: cms.SignedData) -> dict[str, object]:
    info = signed["signer_infos"][0]
    return {"embedded": signed["encap_content_info"]["content"].native is not None,
            "certs": len(signed["certificates"]) if signed["certificates"].native else 0,
            "signers": len(signed["signer_infos"]), "digest": info["digest_algorithm"]["algorithm"].native,
            "sig": info["signature_algorithm"].signature_algo, "attrs": bool(info["signed_attrs"].native),
            "sid": info["sid"].name}


_DEFAULT_FACTS = {"certs": 1, "signers": 1, "digest": "sha256", "sig": "rsassa_pkcs1v15", "attrs": True,
                  "sid": "issuer_and_serial_number"}
_FORM_FACTS: dict[str, dict[str, object]] = {
    "sha512": {"digest": "sha512"}, "sha1": {"digest": "sha1"}, "rsa_pss": {"sig": "rsassa_pss"},
    "ec": {"sig": "ecdsa"}, "noattr": {"attrs": False}, "two_signers": {"signers": 2, "certs": 2},
    "with_intermediate": {"certs": 2}, "keyid": {"sid": "subject_key_identifier"}, "nocerts": {"certs": 0},
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_is_what_its_name_says(pki: TestPKI, content: bytes, form: str) -> None:
    blob = openssl_sign(form, content, pki=pki)
    embedded = form not in MULTIPART_FORMS or form == "crypto_embedded"
    assert _facts(_signed_data(blob)) == {**_DEFAULT_FACTS, "embedded": embedded, **_FORM_FACTS.get(form, {})}
    assert (b"multipart/signed" in blob) is (form in MULTIPART_FORMS)
    if form in MULTIPART_FORMS:
        crlf = content.replace(b"\n", b"\r\n")
        assert (content if form in ("detached_binary", "crlf_to_lf") else crlf) in blob
        assert (b"Content-Type: text/plain" in blob) is (form == "detached_text")


def test_protocol_spellings(pki: TestPKI, content: bytes) -> None:
    old = openssl_sign("protocol_x_pkcs7", content, pki=pki)
    new = openssl_sign("protocol_pkcs7", content, pki=pki)
    assert b'protocol="application/x-pkcs7-signature"' in old
    assert b"Content-Type: application/x-pkcs7-signature" in old
    assert b'protocol="application/pkcs7-signature"' in new
    assert b"x-pkcs7" not in new


def test_openssl_ignores_the_embedded_copy(pki: TestPKI, content: bytes) -> None:
    # A fact for the verifier: openssl checks only the clear copy of a cryptography-built multipart
    # message, so imagesync must compare the two copies itself.
    blob = openssl_sign("crypto_embedded", content, pki=pki)
    bad = tamper_embedded(blob)
    assert bad != blob
    assert len(bad) == len(blob)
    assert _signed_data(bad)["encap_content_info"]["content"].native != _signed_data(blob)[
        "encap_content_info"]["content"].native
    assert oracle_verify(bad, pki.ca_dir, crl_check=True)


SIGNER_EXPECTATIONS = {
    "valid": True, "ec": True, "second": True, "utf8": True, "direct_root": True,
    # `-purpose any` skips keyUsage/extendedKeyUsage checks, and OpenSSL 3.0 at level 1 accepts SHA-1 CA signatures.
    "robot": True, "encipher_only": True, "server_only": True, "sha1_cert": True,
    "expired": False, "not_yet_valid": False, "revoked": False, "untrusted": False, "critical_ext": False,
    "proxy": False,
}


def test_signer_table_covers_every_signer() -> None:
    assert set(SIGNER_EXPECTATIONS) == set(TestPKI.signer_labels())


@pytest.mark.parametrize(("signer", "expected"), SIGNER_EXPECTATIONS.items())
def test_signers_with_openssl(pki: TestPKI, signer: str, expected: bool) -> None:
    party = pki.party(signer)
    blob = openssl_sign("detached", list_for(party), party, pki=pki)
    assert oracle_verify(blob, pki.ca_dir, crl_check=True) is expected


@pytest.mark.parametrize(("ca_dir", "form", "crl_check", "expected"), [
    ("ca_dir", "detached", False, True),
    ("ca_dir_nocrl", "detached", False, True),
    ("ca_dir_nocrl", "detached", True, False),
    ("ca_dir_stale", "detached", False, True),
    ("ca_dir_stale", "detached", True, False),
    ("ca_dir_root_only", "detached", False, False),
    ("ca_dir_root_only", "with_intermediate", False, True),
    # crl_check_all wants the intermediate's CRL too, and a root-only directory has none.
    ("ca_dir_root_only", "with_intermediate", True, False),
])
def test_ca_dirs_with_oracle(pki: TestPKI, content: bytes, ca_dir: str, form: str, crl_check: bool,
                             expected: bool) -> None:
    blob = openssl_sign(form, content, pki=pki)
    assert oracle_verify(blob, getattr(pki, ca_dir), crl_check=crl_check) is expected


def test_revoked_is_rejected_only_because_of_the_crl(pki: TestPKI) -> None:
    blob = openssl_sign("detached", list_for(pki.revoked), pki.revoked, pki=pki)
    assert oracle_verify(blob, pki.ca_dir, crl_check=False)
    assert not oracle_verify(blob, pki.ca_dir, crl_check=True)


def test_credential_write(pki: TestPKI, tmp_path: Path) -> None:
    cert_path, key_path = pki.valid.cred.write(tmp_path, "signer")
    assert (cert_path.name, key_path.name) == ("signer.pem", "signer.key")
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()) == pki.valid.cert


def test_leaf_looks_like_a_grid_certificate(pki: TestPKI) -> None:
    ext = pki.valid.cert.extensions
    with pytest.raises(x509.ExtensionNotFound):
        ext.get_extension_for_class(x509.SubjectAlternativeName)
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    grid_ski = pki.grid.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == grid_ski.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert pki.valid.dn == "/DC=org/DC=imagesync-test/O=Hosts/CN=lists.example.org"
    assert pki.valid.ca_dn == "/DC=org/DC=imagesync-test/CN=Test Grid CA"
    assert pki.utf8.dn == ("/DC=org/DC=imagesync-test/O=People/OU=Unit One+UID=jdoe/"
                           "CN=J\\xC3\\xB6hn D\\xC5\\x93/CN=lists\\/ops\\+dev")


def test_proxy_is_an_rfc3820_proxy(pki: TestPKI) -> None:
    proxy, base = pki.proxy.cert, pki.valid.cert
    assert proxy.subject.rdns[:-1] == base.subject.rdns
    assert proxy.subject.rdns[-1].get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == str(proxy.serial_number)
    assert proxy.extensions.get_extension_for_oid(p.PROXY_CERT_INFO).critical
    # openssl parses the proxyCertInfo value and accepts the proxy once proxies are allowed.
    assert _openssl_verify(pki.ca_dir, pki.proxy.cert_path, "-allow_proxy_certs", "-untrusted", pki.valid.cert_path)
    assert not _openssl_verify(pki.ca_dir, pki.proxy.cert_path, "-untrusted", pki.valid.cert_path)


def test_server_credential(pki: TestPKI, tmp_path: Path) -> None:
    server = p.make_server_credential(pki.grid.cred)
    san = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert_path, _ = server.write(tmp_path, "server")
    assert _openssl_verify(pki.ca_dir, cert_path, "-purpose", "sslserver", "-verify_ip", "127.0.0.1")
    assert not _openssl_verify(pki.ca_dir, pki.valid.cert_path, "-purpose", "sslserver")


def test_old_style_ca_without_critical_constraints_or_key_usage(pki: TestPKI, tmp_path: Path) -> None:
    old = p.make_ca(name(*BASE, ("CN", "Old CA")), issuer=pki.root.cred, critical_basic_constraints=False,
                    key_usage=False, path_length=0)
    constraints = old.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (constraints.critical, constraints.value.path_length) == (False, 0)
    with pytest.raises(x509.ExtensionNotFound):
        old.cert.extensions.get_extension_for_class(x509.KeyUsage)
    leaf_path, _ = p.make_leaf(old, name(*BASE, ("CN", "old leaf")), key="ec").write(tmp_path, "leaf")
    directory = p.write_ca_dir(tmp_path / "ca", [pki.root.cred, old])
    assert _openssl_verify(directory, leaf_path)


def test_crl_lists_the_revoked_serial(pki: TestPKI) -> None:
    crl = p.make_crl(pki.grid.cred, [pki.revoked.cert.serial_number, 7])
    assert crl.is_signature_valid(pki.grid.cred.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(pki.revoked.cert.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(pki.valid.cert.serial_number) is None
    assert crl.next_update_utc is not None
    assert crl.next_update_utc > dt.datetime.now(dt.UTC)


def test_sign_smime_without_detached_still_writes_multipart(pki: TestPKI, content: bytes) -> None:
    # What cryptography's PKCS7SignatureBuilder does without DetachedSignature (the crypto_embedded form).
    embedded = p.sign_smime(content, pki.valid.cred, detached=False)
    detached = p.sign_smime(content, pki.valid.cred)
    for blob in (embedded, detached):
        assert b'Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"' in blob
        assert content.replace(b"\n", b"\r\n") in blob
    inner = _signed_data(embedded)["encap_content_info"]["content"].native
    assert inner == content.replace(b"\n", b"\r\n")
    assert _signed_data(detached)["encap_content_info"]["content"].native is None
    assert oracle_verify(p.sign_smime(content, pki.ec.cred, hash_alg=hashes.SHA512()), pki.ca_dir, crl_check=True)
