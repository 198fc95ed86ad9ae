"""A throwaway CA and a server certificate for 127.0.0.1, for HTTPS tests only.

Kept separate from imagesync.demo.pki on purpose: the fetch tests must not depend on the demo PKI.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerPKI:
    """PEM bytes of a CA certificate and of a server credential it issued."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imagesync tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_server_pki(ca_name: str = "imagesync test CA") -> ServerPKI:
    """Create a fresh EC CA and a server certificate for IP 127.0.0.1 and DNS localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServerPKI(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def write_igtf_ca(ca_pem: bytes, directory: Path) -> Path:
    """Write ``ca_pem`` into ``directory`` as ``<openssl subject hash>.0`` (IGTF layout); return the file."""
    directory.mkdir(parents=True, exist_ok=True)
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout"], input=ca_pem, capture_output=True, check=True
    ).stdout.decode().strip()
    target = directory / f"{subject_hash}.0"
    target.write_bytes(ca_pem)
    return target


def server_context(pki: ServerPKI) -> ssl.SSLContext:
    """A TLS server context presenting ``pki``'s server certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(pki.cert_pem)
        key.write_bytes(pki.key_pem)
        context.load_cert_chain(cert, key)
    return context


def client_context(pki: ServerPKI) -> ssl.SSLContext:
    """A TLS client context trusting ``pki``'s CA only."""
    return ssl.create_default_context(cadata=pki.ca_pem.decode())
