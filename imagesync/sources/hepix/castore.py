"""The grid CA directory as a trust store: chain validation like ``openssl -CApath`` plus our own CRL checks.

cryptography's verifier does the path building and signature checks but no revocation, and its default client
policy rejects grid certificates (no subjectAltName), so the end-entity policy is permissive and the signing
specific checks (keyUsage, extendedKeyUsage, proxies, critical extensions) are done here. See SMIME-NOTES.md.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from imagesync.errors import ConfigError, RevokedError, UntrustedSignerError, brief
from imagesync.sources.hepix import dn

log = logging.getLogger(__name__)
CrlMode = Literal["off", "if_present", "require"]
_SHA256 = hashes.SHA256()
_CERT_FILE = re.compile(r"^[0-9a-f]{8}\.\d+$")
_CRL_FILE = re.compile(r"^[0-9a-f]{8}\.r\d+$")
# Signing is fine for mail, client (robot and host certificates) and code signing purposes.
_SIGNING_EKUS = {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH,
                 ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
_CERTIFICATE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
                       x509.UnsupportedGeneralNameType)
_PROXY_OIDS = {"1.3.6.1.5.5.7.1.14", "1.3.6.1.4.1.3536.1.222"}
_KNOWN_CRITICAL = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
                   ExtensionOID.CERTIFICATE_POLICIES, ExtensionOID.NAME_CONSTRAINTS, ExtensionOID.POLICY_CONSTRAINTS,
                   ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.INHIBIT_ANY_POLICY,
                   ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
                   ExtensionOID.POLICY_MAPPINGS}


@dataclass
class CAStore:
    """Every CA certificate of the directory is an anchor; CRLs are indexed by issuer name."""

    directory: Path
    crl_mode: CrlMode
    anchors: list[x509.Certificate]
    crls: dict[x509.Name, list[x509.CertificateRevocationList]]
    _crl_ok: dict[bytes, bool] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, crl_mode: CrlMode) -> CAStore:
        """Load ``<hash>.N`` certificates and ``<hash>.rN`` CRLs (PEM or DER). Raises ConfigError."""
        try:
            names = sorted(p.name for p in directory.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read CA directory: {exc.strerror}", subject=str(directory)) from None
        anchors: dict[bytes, x509.Certificate] = {}
        crls: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        for name in names:
            if _CERT_FILE.match(name):
                for cert in _read_certs(directory / name):
                    anchors[cert.fingerprint(_SHA256)] = cert
            elif _CRL_FILE.match(name) and (crl := _read_crl(directory / name)) is not None:
                crls.setdefault(crl.issuer, []).append(crl)
        if not anchors:
            raise ConfigError("no CA certificates (<hash>.0 files) found", subject=str(directory))
        return cls(directory=directory, crl_mode=crl_mode, anchors=list(anchors.values()), crls=crls)

    def validate(self, leaf: x509.Certificate, intermediates: list[x509.Certificate],
                 now: datetime) -> list[x509.Certificate]:
        """Validate ``leaf`` for signing; return the chain leaf..anchor.

        Raises UntrustedSignerError (no path, expired, unfit for signing, or a certificate cryptography cannot
        parse or use) or RevokedError.
        """
        try:
            return self._validate(leaf, intermediates, now)
        except _CERTIFICATE_ERRORS as exc:
            # The certificates come from the message: cryptography parses their parts lazily, right here.
            raise UntrustedSignerError(f"the signer's certificate cannot be used: {brief(exc, 160)}") from None

    def _validate(self, leaf: x509.Certificate, intermediates: list[x509.Certificate],
                  now: datetime) -> list[x509.Certificate]:
        check_signing_certificate(leaf, now)
        verifier = (xv.PolicyBuilder().store(xv.Store(self.anchors)).time(now)
                    .extension_policies(ca_policy=_ca_policy(), ee_policy=xv.ExtensionPolicy.permit_all())
                    .build_client_verifier())
        try:
            chain = verifier.verify(leaf, intermediates).chain
        except xv.VerificationError as exc:
            raise UntrustedSignerError(
                f"signer {dn.render(leaf.subject)} does not chain to a CA in {self.directory}: {brief(exc)}"
            ) from None
        chain = self._to_root(chain)
        self._check_revocation(chain, now)
        return chain

    def _to_root(self, chain: list[x509.Certificate]) -> list[x509.Certificate]:
        # Every CA in the directory is an anchor, so the verified path may stop at an intermediate: follow it up
        # to its self-signed root so that the root's CRL entry for the intermediate is checked too.
        chain = list(chain)
        for _ in range(8):
            top = chain[-1]
            if top.issuer == top.subject:
                break
            parent = next((a for a in self.anchors if a.subject == top.issuer and _issued(top, a)), None)
            if parent is None or parent in chain:
                break
            chain.append(parent)
        return chain

    def _check_revocation(self, chain: list[x509.Certificate], now: datetime) -> None:
        if self.crl_mode == "off":
            return
        for cert, issuer in pairwise(chain):
            crl = self._fresh_crl(issuer, now)
            if crl is None:
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise RevokedError(f"certificate {dn.render(cert.subject)} (serial {cert.serial_number:x}) "
                                   f"is revoked by {dn.render(issuer.subject)}")

    def _fresh_crl(self, issuer: x509.Certificate, now: datetime) -> x509.CertificateRevocationList | None:
        named = self.crls.get(issuer.subject, [])
        candidates = [c for c in named if self._signed_by(c, issuer)]
        if named and not candidates:
            raise RevokedError(f"the CRL for CA {dn.render(issuer.subject)} in {self.directory} is not signed by "
                               "that CA", hint="replace the CRL (fetch-crl)")
        if not candidates:
            if self.crl_mode == "require":
                raise RevokedError(f"no CRL for CA {dn.render(issuer.subject)} in {self.directory} "
                                   "(trust.crl is require)", hint="run fetch-crl")
            return None
        crl = max(candidates, key=lambda c: c.last_update_utc)
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            raise RevokedError(f"CRL of CA {dn.render(issuer.subject)} is stale "
                               f"(next update was due {crl.next_update_utc:%Y-%m-%dT%H:%M:%SZ})", hint="run fetch-crl")
        return crl

    def _signed_by(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        key = crl.fingerprint(_SHA256) + issuer.fingerprint(_SHA256)
        if key not in self._crl_ok:
            try:
                self._crl_ok[key] = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
            except (TypeError, ValueError):
                self._crl_ok[key] = False
        return self._crl_ok[key]


def _issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_signing_certificate(cert: x509.Certificate, now: datetime) -> None:
    """Checks the path validator does not make for an end entity. Raises UntrustedSignerError."""
    who = dn.render(cert.subject)
    if cert.not_valid_after_utc < now:
        raise UntrustedSignerError(f"signer certificate {who} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise UntrustedSignerError(f"signer certificate {who} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid in _PROXY_OIDS:
            raise UntrustedSignerError(f"signer certificate {who} is a proxy certificate")
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise UntrustedSignerError(f"signer certificate {who} has an unknown critical extension {oid}")
    _check_usage(cert, who)


def _check_usage(cert: x509.Certificate, who: str) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            raise UntrustedSignerError(f"signer certificate {who} is not allowed to sign (keyUsage)")
    except x509.ExtensionNotFound:
        pass
    try:
        ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return
    if not ekus & _SIGNING_EKUS:
        raise UntrustedSignerError(f"signer certificate {who} is not allowed to sign (extendedKeyUsage)")


def _ca_policy() -> xv.ExtensionPolicy:
    # Older IGTF CAs carry non-critical basicConstraints or no keyUsage: accept both, but a CA must say it is one.
    return (xv.ExtensionPolicy.webpki_defaults_ca()
            .require_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, _is_ca)
            .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _may_sign_certs))


def _is_ca(policy: xv.Policy, cert: x509.Certificate, value: x509.BasicConstraints) -> None:
    if not value.ca:
        raise ValueError("basicConstraints does not mark a CA")


def _may_sign_certs(policy: xv.Policy, cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("keyUsage does not allow certificate signing")


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except (OSError, ValueError, x509.InvalidVersion) as exc:
        log.warning("ca_dir: skipping unreadable certificate %s: %s", path, exc)
        return []


def _read_crl(path: Path) -> x509.CertificateRevocationList | None:
    try:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (OSError, ValueError) as exc:
        log.warning("ca_dir: skipping unreadable CRL %s: %s", path, exc)
        return None


