"""A small grid-style PKI made with cryptography alone: CAs, signers, proxies, CRLs, IGTF directories, S/MIME.

Shared by ``imagesync demo`` and the test suite, so it must not need the ``openssl`` command or pytest. Grid
user and host certificates carry no subjectAltName, which is why the signers here have none either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyKind = Literal["rsa", "ec"]
KeyUse = Literal["sign", "encipher"]
SignHash = hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512

PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# ProxyCertInfo ::= SEQUENCE { ProxyPolicy ::= SEQUENCE { policyLanguage id-ppl-inheritAll (1.3.6.1.5.5.7.21.1) } }
_PROXY_CERT_INFO_DER = bytes.fromhex("300c300a06082b06010505071501")
DEFAULT_EKU: tuple[ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Credential:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.pem`` and ``<stem>.key`` (mode 0600) into ``directory``. Raises OSError."""
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


def new_key(kind: KeyKind = "rsa") -> PrivateKey:
    """A fresh RSA 2048 or ECDSA P-256 key. Raises ValueError for another kind."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key kind {kind!r}")


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey, *, not_before: dt.datetime | None,
             not_after: dt.datetime | None, serial: int | None) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=365)))


def _key_ids(builder: x509.CertificateBuilder, key: PrivateKey, issuer_key: PrivateKey) -> x509.CertificateBuilder:
    return (builder
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))


def make_ca(subject: x509.Name, *, issuer: Credential | None = None, key: KeyKind = "rsa",
            not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
            path_length: int | None = None, critical_basic_constraints: bool = True,
            key_usage: bool = True) -> Credential:
    """A CA certificate, self-signed when ``issuer`` is None; validity defaults to yesterday + 10 years.

    Raises ValueError for an unknown key kind.
    """
    private = new_key(key)
    signer_key = issuer.key if issuer else private
    builder = _builder(subject, issuer.cert.subject if issuer else subject, private, not_before=not_before,
                       not_after=not_after or _now() + dt.timedelta(days=3650), serial=None)
    builder = _key_ids(builder, private, signer_key).add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=critical_basic_constraints)
    if key_usage:
        builder = builder.add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
                                        critical=True)
    return Credential(builder.sign(signer_key, hashes.SHA256()), private)


def _key_usage(*, digital_signature: bool = False, content_commitment: bool = False, key_encipherment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=content_commitment,
                         key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=crl_sign, encipher_only=False, decipher_only=False)


def make_leaf(issuer: Credential, subject: x509.Name, *, key: KeyKind = "rsa",
              eku: Sequence[ObjectIdentifier] | None = DEFAULT_EKU, key_usage: KeyUse | None = "sign",
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              hash_alg: SignHash | None = None,
              extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
              serial: int | None = None) -> Credential:
    """An end-entity (signer) certificate without subjectAltName, like grid user and host certificates.

    ``hash_alg`` defaults to SHA-256. Raises ValueError for an unknown key kind or a hash cryptography
    refuses for signatures (it refuses SHA-1).
    """
    private = new_key(key)
    builder = _key_ids(_builder(subject, issuer.cert.subject, private, not_before=not_before,
                                not_after=not_after, serial=serial),
                       private, issuer.key)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if key_usage == "sign":
        builder = builder.add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
    elif key_usage == "encipher":
        builder = builder.add_extension(_key_usage(key_encipherment=True), critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    for extension, critical in extra_extensions:
        builder = builder.add_extension(extension, critical=critical)
    return Credential(builder.sign(issuer.key, hash_alg or hashes.SHA256()), private)


def make_proxy(issuer_leaf: Credential) -> Credential:
    """An RFC 3820 proxy of ``issuer_leaf``: its subject plus ``CN=<serial>`` and a critical proxyCertInfo.

    Raises nothing.
    """
    private = new_key("rsa")
    serial = x509.random_serial_number()
    subject = x509.Name([*issuer_leaf.cert.subject.rdns,
                         x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])])
    not_after = min(issuer_leaf.cert.not_valid_after_utc, _now() + dt.timedelta(hours=12))
    builder = (_builder(subject, issuer_leaf.cert.subject, private, not_before=None, not_after=not_after,
                        serial=serial)
               .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
               .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO, _PROXY_CERT_INFO_DER), critical=True))
    return Credential(builder.sign(issuer_leaf.key, hashes.SHA256()), private)


def make_server_credential(issuer: Credential, host: str = "127.0.0.1") -> Credential:
    """A TLS server certificate for ``host`` (an IP address or a DNS name) plus ``localhost``.

    Raises ValueError only through cryptography for an unusable name.
    """
    try:
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        names = [x509.DNSName(host)]
    if host != "localhost":
        names.append(x509.DNSName("localhost"))
    san = x509.SubjectAlternativeName(names)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    return make_leaf(issuer, subject, eku=(ExtendedKeyUsageOID.SERVER_AUTH,), key_usage=None,
                     extra_extensions=((san, False),
                                       (_key_usage(digital_signature=True, key_encipherment=True), True)))


def make_crl(issuer: Credential, revoked_serials: Iterable[int], *, last_update: dt.datetime | None = None,
             next_update: dt.datetime | None = None) -> x509.CertificateRevocationList:
    """A CRL signed by ``issuer`` listing ``revoked_serials``; by default valid from an hour ago for a week.

    Raises nothing.
    """
    last = last_update or _now() - dt.timedelta(hours=1)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.cert.subject).last_update(last)
               .next_update(next_update or last + dt.timedelta(days=7))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False)
               .add_extension(x509.CRLNumber(int(last.timestamp())), False))
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build())
    return builder.sign(issuer.key, hashes.SHA256())


# --- OpenSSL's X509_NAME_hash -------------------------------------------------------------------------------

_STRING_TAGS = {12: "utf-8", 19: "latin-1", 20: "latin-1", 22: "latin-1", 26: "latin-1", 28: "utf-32-be",
                30: "utf-16-be"}
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one DER item at ``pos``: (tag byte, content, next position). Names are DER, so no BER here."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    return tag, data[pos:pos + length], pos + length


def _items(content: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(content):
        tag, value, pos = _tlv(content, pos)
        out.append((tag, value))
    return out


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _canonical_value(tag: int, value: bytes) -> bytes:
    if tag not in _STRING_TAGS:
        return _der(tag, value)  # OpenSSL copies non-string values unchanged
    text = _ASCII_SPACE.sub(" ", value.decode(_STRING_TAGS[tag])).strip(" ")
    # Only ASCII is case-folded, exactly as OpenSSL does byte by byte.
    folded = "".join(ch.lower() if ch < "\x80" else ch for ch in text)
    return _der(0x0C, folded.encode("utf-8"))


def subject_hash(name: x509.Name) -> str:
    """OpenSSL's ``X509_NAME_hash`` (``openssl x509 -hash``) of ``name``: 8 lowercase hex digits.

    Raises nothing for names cryptography produced.
    """
    _, rdns, _ = _tlv(name.public_bytes(), 0)
    canonical = b""
    for _tag, rdn in _items(rdns):
        entries = []
        for _seq_tag, atv in _items(rdn):
            (oid_tag, oid), (value_tag, value) = _items(atv)
            entries.append(_der(0x30, _der(oid_tag, oid) + _canonical_value(value_tag, value)))
        canonical += _der(0x31, b"".join(sorted(entries)))  # DER SET OF: sorted encodings
    return hashlib.sha1(canonical, usedforsecurity=False).digest()[:4][::-1].hex()


def write_ca_dir(directory: Path, cas: Iterable[Credential],
                 crls: Iterable[x509.CertificateRevocationList] = ()) -> Path:
    """Write an IGTF-style directory: ``<hash>.N`` CA certificates and ``<hash>.rN`` CRLs (PEM).

    Works with ``openssl -CApath``. Raises OSError.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for ca in cas:
        _write_next(directory, subject_hash(ca.cert.subject), "", ca.cert_pem)
    for crl in crls:
        _write_next(directory, subject_hash(crl.issuer), "r", crl.public_bytes(serialization.Encoding.PEM))
    return directory


def _write_next(directory: Path, name_hash: str, prefix: str, data: bytes) -> None:
    index = 0
    while (directory / f"{name_hash}.{prefix}{index}").exists():
        index += 1
    (directory / f"{name_hash}.{prefix}{index}").write_bytes(data)


def sign_smime(content: bytes, signer: Credential, *, detached: bool = True,
               hash_alg: SignHash | None = None) -> bytes:
    """Sign ``content`` as an S/MIME message (detached: multipart/signed), the way a list publisher does.

    Without ``detached`` cryptography still writes multipart/signed, with the content also embedded in the
    signature. Raises ValueError through cryptography for unusable keys or hashes.
    """
    options = [pkcs7.PKCS7Options.DetachedSignature] if detached else []
    return (pkcs7.PKCS7SignatureBuilder().set_data(content)
            .add_signer(signer.cert, signer.key, hash_alg or hashes.SHA256())
            .sign(serialization.Encoding.SMIME, options))
