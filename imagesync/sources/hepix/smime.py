"""S/MIME (CMS SignedData) verification of image lists -> verified content + signer.

asn1crypto parses the CMS structure (BER included); cryptography checks the signatures; :mod:`castore` the
chain and CRLs. cryptography has no public PKCS#7 verify, hence the manual steps (RFC 5652 §5.4, §5.6).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, x448, x25519

from imagesync.errors import (
    BadSignatureError,
    MalformedSignatureError,
    UntrustedSignerError,
    WeakAlgorithmError,
    brief,
)
from imagesync.model import Signer, VerifiedContent
from imagesync.sources.hepix import dn
from imagesync.sources.hepix.castore import CAStore
from imagesync.sources.hepix.mime import strip_text_header, unwrap

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512, "sha3_256": hashes.SHA3_256, "sha3_384": hashes.SHA3_384, "sha3_512": hashes.SHA3_512,
}
# asn1crypto and cryptography parse lazily, so these can come from any access to a hostile structure, long after
# loading it; cryptography's x509 parse errors below are not ValueErrors.
_LIBRARY_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
                   x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
_OTHER_KEYS = ((dsa.DSAPublicKey, "DSA"), (ed448.Ed448PublicKey, "Ed448"), (x25519.X25519PublicKey, "X25519"),
               (x448.X448PublicKey, "X448"))
_RUST_PARSE_ERROR = re.compile(r"ParseError \{ kind: (?P<kind>\w+).*?(?:location: \[(?P<where>[^\]]*)\])?")


@dataclass(frozen=True)
class _Cert:
    asn1: asn1_x509.Certificate
    crypto: x509.Certificate


def verify(blob: bytes, store: CAStore, *, now: datetime, allow_sha1: bool = False) -> VerifiedContent:
    """Verify an S/MIME, PEM or DER signed list against ``store``.

    Raises MalformedSignatureError, BadSignatureError, UntrustedSignerError (RevokedError), WeakAlgorithmError;
    whatever the parsing libraries raise on hostile input becomes one of these.
    """
    envelope = unwrap(blob)
    with _hostile("the CMS signature"):
        signed, certs = _load(envelope.cms)
        candidates = _candidates(envelope.detached, _embedded(signed))
        infos = list(signed["signer_infos"])
    if not infos:
        raise MalformedSignatureError("the signature has no signer")
    content: bytes | None = None
    signers: list[Signer] = []
    for info in infos:
        with _hostile("the CMS signer info"):
            cert = _signer_cert(info, certs)
            verified = _check_signer(info, cert, candidates, allow_sha1)
            store.validate(cert.crypto, [c.crypto for c in certs if c is not cert], now)
        content = content if content is not None else verified
        signers.append(_signer(cert.crypto))
    assert content is not None  # infos is not empty
    return VerifiedContent(content=strip_text_header(content), kind="smime", signer=signers[0], signers=tuple(signers))


@contextmanager
def _hostile(what: str) -> Iterator[None]:
    """The one boundary where library exceptions about attacker-controlled bytes become our errors."""
    try:
        yield
    except UnsupportedAlgorithm as exc:
        raise UntrustedSignerError(f"{what} uses an unsupported algorithm: {brief(exc, 160)}") from None
    except _LIBRARY_ERRORS as exc:
        raise MalformedSignatureError(f"cannot parse {what}: {_parse_error(exc)}") from None


def _parse_error(exc: BaseException) -> str:
    # cryptography's messages carry a Rust debug dump; its kind and location are what an operator can use.
    match = _RUST_PARSE_ERROR.search(str(exc))
    if match is None:
        return brief(exc, 160)
    where = (match.group("where") or "").replace('"', "")
    return f"invalid ASN.1 ({match.group('kind')}{' in ' + where if where else ''})"


def _load(der: bytes) -> tuple[cms.SignedData, list[_Cert]]:
    info = cms.ContentInfo.load(der)
    if info["content_type"].native != "signed_data":
        raise MalformedSignatureError(f"CMS content is {info['content_type'].native}, not signed data")
    signed = info["content"]
    if signed["encap_content_info"]["content_type"].native != "data":
        raise MalformedSignatureError("the signed content is not plain data")
    choices = [c for c in signed["certificates"] or [] if c.name == "certificate"]
    return signed, [_certificate(choice.chosen, number) for number, choice in enumerate(choices, start=1)]


def _certificate(asn1: asn1_x509.Certificate, number: int) -> _Cert:
    """Load an embedded certificate and parse every part we will read, while we can still say which one broke.

    cryptography parses names, extensions and keys only when they are first read, deep inside the chain checks.
    Raises MalformedSignatureError, or UntrustedSignerError for a key type cryptography does not know.
    """
    label = f"number {number}"
    try:
        crypto = x509.load_der_x509_certificate(asn1.dump())
        label = dn.render(crypto.subject)
        dn.render(crypto.issuer)
        _ = crypto.extensions, crypto.not_valid_before_utc, crypto.not_valid_after_utc, crypto.public_key()
    except UnsupportedAlgorithm as exc:
        raise UntrustedSignerError(f"embedded certificate {label} has an unsupported public key type "
                                   f"({brief(exc, 100)})") from None
    except _LIBRARY_ERRORS as exc:
        raise MalformedSignatureError(f"embedded certificate {label} cannot be parsed: {_parse_error(exc)}") from None
    return _Cert(asn1=asn1, crypto=crypto)


def _embedded(signed: cms.SignedData) -> bytes | None:
    value = signed["encap_content_info"]["content"]
    if value is None or value.native is None:
        return None
    return bytes(value.native)


def _candidates(detached: bytes | None, embedded: bytes | None) -> list[bytes]:
    """The byte strings the signature may cover, most likely first."""
    if detached is None:
        if embedded is None:
            raise MalformedSignatureError("detached signature without the signed content")
        return [embedded]
    # openssl canonicalises to CRLF unless -binary; mail transports may have turned CRLF into LF.
    already = detached.count(b"\n") == detached.count(b"\r\n")
    canonical = detached if already else detached.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    options = [canonical] if canonical == detached else [canonical, detached]
    if embedded is not None:
        if embedded not in options and embedded.replace(b"\r\n", b"\n") != detached.replace(b"\r\n", b"\n"):
            raise BadSignatureError("the message carries two different copies of the content")
        return [embedded]
    return options


def _signer_cert(info: cms.SignerInfo, certs: list[_Cert]) -> _Cert:
    sid = info["sid"]
    if sid.name == "issuer_and_serial_number":
        # Fast path: the encoder usually copies the issuer bytes verbatim; asn1crypto's normalising compare is slow.
        issuer_der = sid.chosen["issuer"].dump()
        for cert in certs:
            if cert.asn1.serial_number == sid.chosen["serial_number"].native and cert.asn1.issuer.dump() == issuer_der:
                return cert
    for cert in certs:
        if sid.name == "subject_key_identifier":
            if cert.asn1.key_identifier == sid.chosen.native:
                return cert
        elif (cert.asn1.serial_number == sid.chosen["serial_number"].native
              and cert.asn1.issuer == sid.chosen["issuer"]):
            return cert
    raise UntrustedSignerError("the message carries no certificate for its signer")


def _check_signer(info: cms.SignerInfo, cert: _Cert, candidates: list[bytes], allow_sha1: bool) -> bytes:
    _check_key_type(cert.crypto)
    digest_name = _hash_name(info["digest_algorithm"]["algorithm"].native, allow_sha1)
    attrs = info["signed_attrs"]
    if not attrs:
        for content in candidates:
            if _signature_ok(info, cert.crypto, content, digest_name, allow_sha1):
                return content
        raise BadSignatureError("signature does not match the content (tampered or wrong signer)")
    if _attribute(attrs, "content_type") != b"data":
        raise BadSignatureError("the signature covers another kind of content, not data (signed content-type)")
    expected = _attribute(attrs, "message_digest")
    matching = [c for c in candidates if hashlib.new(digest_name, c).digest() == expected]
    if not matching:
        raise BadSignatureError("content does not match the signed digest (tampered)")
    content = matching[0]
    # The signature covers the DER of the attributes as SET OF, not their [0] IMPLICIT encoding in the message.
    if not _signature_ok(info, cert.crypto, b"\x31" + attrs.dump()[1:], digest_name, allow_sha1):
        raise BadSignatureError("signature over the signed attributes is invalid")
    return content


def _check_key_type(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if not isinstance(key, _KEY_TYPES):
        kind = next((label for cls, label in _OTHER_KEYS if isinstance(key, cls)), type(key).__name__)
        raise UntrustedSignerError(f"signer certificate {dn.render(cert.subject)} has a key of type {kind}; "
                                   "imagesync verifies RSA, RSA-PSS, ECDSA and Ed25519 signatures only")


def _attribute(attrs: cms.CMSAttributes, name: str) -> bytes:
    for attr in attrs:
        if attr["type"].native == name:
            value = attr["values"][0].native
            return value.encode() if isinstance(value, str) else bytes(value)
    raise MalformedSignatureError(f"signed attributes lack {name}")


def _hash_name(name: str, allow_sha1: bool) -> str:
    if name == "sha1" and allow_sha1:
        return name
    if name in ("md2", "md5", "sha1"):
        raise WeakAlgorithmError(f"signature uses {name.upper()}, which is refused",
                                 hint="trust.allow_sha1 permits SHA-1")
    if name not in _HASHES:
        raise MalformedSignatureError(f"unsupported digest algorithm {name}")
    return name


def _signature_ok(info: cms.SignerInfo, cert: x509.Certificate, data: bytes, digest: str, allow_sha1: bool) -> bool:
    algorithm = info["signature_algorithm"]
    signature = bytes(info["signature"].native)
    key = cert.public_key()
    try:
        kind = algorithm.signature_algo
        if kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, _pss(algorithm, allow_sha1), _HASHES[_pss_hash(algorithm, allow_sha1)]())
        elif kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), _HASHES[_combined_hash(algorithm, digest, allow_sha1)]())
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_HASHES[_combined_hash(algorithm, digest, allow_sha1)]()))
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise BadSignatureError(f"signature algorithm {kind} does not fit the signer's key")
    except InvalidSignature:
        return False
    except UnsupportedAlgorithm as exc:
        raise MalformedSignatureError(f"unsupported signature algorithm: {brief(exc, 160)}") from None
    return True


def _combined_hash(algorithm: cms.SignedDigestAlgorithm, digest: str, allow_sha1: bool) -> str:
    # "sha256WithRSAEncryption" names its hash; plain "rsaEncryption" uses the signer's digest algorithm.
    try:
        return _hash_name(algorithm.hash_algo, allow_sha1)
    except ValueError:
        return digest


def _pss(algorithm: cms.SignedDigestAlgorithm, allow_sha1: bool) -> padding.PSS:
    params = algorithm["parameters"]
    mgf_hash = _hash_name(params["mask_gen_algorithm"]["parameters"]["algorithm"].native, allow_sha1)
    return padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()), salt_length=int(params["salt_length"].native))


def _pss_hash(algorithm: cms.SignedDigestAlgorithm, allow_sha1: bool) -> str:
    return _hash_name(algorithm["parameters"]["hash_algorithm"]["algorithm"].native, allow_sha1)


def _signer(cert: x509.Certificate) -> Signer:
    return Signer(dn=dn.render(cert.subject), ca=dn.render(cert.issuer),
                  fingerprint=cert.fingerprint(hashes.SHA256()).hex())

