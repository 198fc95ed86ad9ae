"""The session test PKI, signed samples in every form publishers produce (real ``openssl``), and the oracle.

``imagesync.demo.pki`` builds the certificates; only what cryptography refuses (SHA-1 certificate signatures)
and the signing forms themselves come from the ``openssl`` command, which is fine here: tests only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from imagesync.demo import pki as p
from imagesync.sources.hepix import dn

TAMPER_MARKER = b"integrity-marker"
UNKNOWN_CRITICAL_OID = ObjectIdentifier("1.3.6.1.4.1.99999.42.1")
BASE = (("DC", "org"), ("DC", "imagesync-test"))
_OIDS = {"DC": NameOID.DOMAIN_COMPONENT, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
         "CN": NameOID.COMMON_NAME, "UID": NameOID.USER_ID}


def name(*rdns: tuple[str, str] | list[tuple[str, str]]) -> x509.Name:
    """A Name from (attr, value) pairs in certificate order; a list of pairs is one multi-valued RDN."""
    out = []
    for rdn in rdns:
        pairs = rdn if isinstance(rdn, list) else [rdn]
        out.append(x509.RelativeDistinguishedName([x509.NameAttribute(_OIDS[attr], value) for attr, value in pairs]))
    return x509.Name(out)


@dataclass(frozen=True)
class Party:
    """A credential of the test PKI with the files the openssl CLI needs."""

    label: str
    cred: p.Credential
    cert_path: Path
    key_path: Path

    @property
    def cert(self) -> x509.Certificate:
        return self.cred.cert

    @property
    def dn(self) -> str:
        """The subject in OpenSSL one-line form, as HEPiX lists write it."""
        return dn.render(self.cred.cert.subject)

    @property
    def ca_dn(self) -> str:
        return dn.render(self.cred.cert.issuer)


@dataclass(frozen=True)
class TestPKI:
    """Everything the tests sign with and verify against, built once per session."""

    __test__: ClassVar[bool] = False
    directory: Path
    root: Party
    grid: Party
    untrusted_ca: Party
    valid: Party
    ec: Party
    expired: Party
    not_yet_valid: Party
    revoked: Party
    robot: Party
    encipher_only: Party
    server_only: Party
    sha1_cert: Party
    critical_ext: Party
    proxy: Party
    untrusted: Party
    utf8: Party
    second: Party
    direct_root: Party
    ca_dir: Path
    ca_dir_nocrl: Path
    ca_dir_stale: Path
    ca_dir_root_only: Path

    def party(self, label: str) -> Party:
        value = getattr(self, label)
        assert isinstance(value, Party), label
        return value

    @classmethod
    def signer_labels(cls) -> tuple[str, ...]:
        cas = {"root", "grid", "untrusted_ca"}
        return tuple(f.name for f in fields(cls) if f.type == "Party" and f.name not in cas)


def build_test_pki(directory: Path) -> TestPKI:
    """Make the CAs, signers, CRLs and CA directories under ``directory``."""
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)

    def party(label: str, cred: p.Credential) -> Party:
        return Party(label, cred, *cred.write(certs, label))

    now = dt.datetime.now(dt.UTC)
    root = p.make_ca(name(*BASE, ("CN", "Test Root CA")))
    grid_name = name(*BASE, ("CN", "Test Grid CA"))
    grid = p.make_ca(grid_name, issuer=root)
    untrusted_ca = p.make_ca(grid_name)
    host = name(*BASE, ("O", "Hosts"), ("CN", "lists.example.org"))

    def leaf(label: str, cn: str, **kw: Any) -> Party:
        return party(label, p.make_leaf(grid, name(*BASE, ("O", "Hosts"), ("CN", cn)), **kw))

    valid = party("valid", p.make_leaf(grid, host))
    revoked = leaf("revoked", "revoked.example.org")
    parties: dict[str, Any] = {
        "root": party("root", root), "grid": party("grid", grid), "untrusted_ca": party("untrusted_ca", untrusted_ca),
        "valid": valid, "revoked": revoked,
        "ec": leaf("ec", "ec.example.org", key="ec"),
        "expired": leaf("expired", "expired.example.org", not_before=now - dt.timedelta(days=60),
                        not_after=now - dt.timedelta(days=1)),
        "not_yet_valid": leaf("not_yet_valid", "future.example.org", not_before=now + dt.timedelta(days=1),
                              not_after=now + dt.timedelta(days=60)),
        "robot": party("robot", p.make_leaf(grid, name(*BASE, ("O", "Robots"), ("CN", "Robot: list signer")),
                                            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))),
        "encipher_only": leaf("encipher_only", "encipher.example.org", key_usage="encipher"),
        "server_only": leaf("server_only", "server.example.org", eku=(ExtendedKeyUsageOID.SERVER_AUTH,)),
        "critical_ext": leaf("critical_ext", "critical.example.org", extra_extensions=(
            (x509.UnrecognizedExtension(UNKNOWN_CRITICAL_OID, b"\x05\x00"), True),)),
        "proxy": party("proxy", p.make_proxy(valid.cred)),
        "untrusted": party("untrusted", p.make_leaf(untrusted_ca, host)),
        "utf8": party("utf8", p.make_leaf(grid, name(*BASE, ("O", "People"), [("OU", "Unit One"), ("UID", "jdoe")],
                                                     ("CN", "Jöhn Dœ"), ("CN", "lists/ops+dev")))),
        "second": leaf("second", "mirror.example.org"),
        "direct_root": party("direct_root", p.make_leaf(root, name(*BASE, ("O", "Hosts"),
                                                                   ("CN", "direct.example.org")))),
    }
    parties["sha1_cert"] = _sha1_party(leaf("sha1_cert", "sha1.example.org"), parties["grid"])
    parties.update(_ca_dirs(directory, root, grid, revoked.cert.serial_number, now))
    return TestPKI(directory=directory, **parties)


_SHA1_EXTENSIONS = """[v3]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = emailProtection, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _sha1_party(draft: Party, grid: Party) -> Party:
    # cryptography refuses SHA-1 signatures, so the grid CA signs a CSR for the draft's key with the openssl CLI.
    ext, csr = draft.cert_path.with_suffix(".cnf"), draft.cert_path.with_suffix(".csr")
    ext.write_text(_SHA1_EXTENSIONS)
    run = partial(subprocess.run, check=True, capture_output=True)
    run(["openssl", "req", "-new", "-key", draft.key_path, "-subj", draft.dn, "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", grid.cert_path, "-CAkey", grid.key_path, "-sha1",
         "-set_serial", str(x509.random_serial_number()), "-days", "365", "-extfile", ext, "-extensions", "v3",
         "-out", draft.cert_path])
    cert = x509.load_pem_x509_certificate(draft.cert_path.read_bytes())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    assert cert.subject == draft.cert.subject
    return Party(draft.label, p.Credential(cert, draft.cred.key), draft.cert_path, draft.key_path)


def _ca_dirs(directory: Path, root: p.Credential, grid: p.Credential, revoked_serial: int,
             now: dt.datetime) -> dict[str, Path]:
    root_crl = p.make_crl(root, [])
    grid_crl = p.make_crl(grid, [revoked_serial])
    stale = p.make_crl(grid, [revoked_serial], last_update=now - dt.timedelta(days=30),
                       next_update=now - dt.timedelta(days=1))
    return {
        "ca_dir": p.write_ca_dir(directory / "ca", [root, grid], [root_crl, grid_crl]),
        "ca_dir_nocrl": p.write_ca_dir(directory / "ca-nocrl", [root, grid], []),
        "ca_dir_stale": p.write_ca_dir(directory / "ca-stale", [root, grid], [root_crl, stale]),
        "ca_dir_root_only": p.write_ca_dir(directory / "ca-root-only", [root], [root_crl]),
    }


# --- HEPiX content ------------------------------------------------------------------------------------------

def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hepix_image(identifier: str, version: str, *, title: str = "Image for Ubuntu 24.04 [Ubuntu/24.04/KVM]",
                size: int = 1073741824, vo: str = "fedcloud.egi.eu") -> dict[str, object]:
    """One AppDB-like ``hv:image`` entry (checksum derived from id and version)."""
    image: dict[str, object] = {
        "ad:group": "General group", "ad:mpuri": f"https://appdb.egi.eu/store/vm/image/{identifier}:8123/",
        "ad:user:fullname": "Jane Publisher", "ad:user:guid": "6f1c7a3e-0d43-4d8a-9c8e-2b1f00000001",
        "ad:vo": vo, "dc:description": "Ubuntu 24.04 LTS with cloud-init", "dc:identifier": identifier,
        "dc:title": title, "hv:core_minimum": "1", "hv:format": "QCOW2", "hv:hypervisor": "KVM",
        "hv:ram_minimum": "1024", "hv:size": str(size),
        "hv:uri": f"https://images.example.org/{identifier}/{version}/image.qcow2", "hv:version": version,
        "sl:arch": "x86_64", "sl:checksum:sha512": hashlib.sha512(f"{identifier}-{version}".encode()).hexdigest(),
        "sl:comments": "", "sl:os": "Linux", "sl:osname": "Ubuntu", "sl:osversion": "24.04",
    }
    return {"hv:image": image}


DEFAULT_IMAGES = (hepix_image("2e1b7f0c-5a4e-4b1e-9d2a-7c3f1a000001", "2026.11.01"),
                  hepix_image("2e1b7f0c-5a4e-4b1e-9d2a-7c3f1a000002", "1.4", title="Image for CentOS Stream 9"))


def hepix_list(*, identifier: str, created: dt.datetime, expires: dt.datetime, endorser_dn: str, endorser_ca: str,
               images: Sequence[Mapping[str, object]] = DEFAULT_IMAGES) -> bytes:
    """A valid HEPiX JSON list as AppDB writes it (LF line ends); carries TAMPER_MARKER once."""
    body = {"hv:imagelist": {
        "ad:vo": "fedcloud.egi.eu", "dc:date:created": _iso(created), "dc:date:expires": _iso(expires),
        "dc:description": f"imagesync test list ({TAMPER_MARKER.decode()})", "dc:identifier": identifier,
        "dc:source": "https://appdb.egi.eu/", "dc:title": "imagesync test VO list",
        "hv:endorser": {"hv:x509": {"dc:creator": "EGI Applications Database", "hv:ca": endorser_ca,
                                    "hv:dn": endorser_dn, "hv:email": "appdb-support@example.org"}},
        "hv:images": list(images), "hv:uri": f"https://lists.example.org/store/vo/{identifier}/image.list",
        "hv:version": created.strftime("%Y%m%d%H%M%S"),
    }}
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode()


def list_for(signer: Party, *, identifier: str = "7f3e9a52-1b0c-4c2d-8e6f-5a4b3c2d1e0f",
             images: Sequence[Mapping[str, object]] = DEFAULT_IMAGES) -> bytes:
    """A list created an hour ago, expiring in 30 days, endorsed by ``signer``."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return hepix_list(identifier=identifier, created=now - dt.timedelta(hours=1), expires=now + dt.timedelta(days=30),
                      endorser_dn=signer.dn, endorser_ca=signer.ca_dn, images=images)


# --- signing with the openssl CLI ---------------------------------------------------------------------------

_OPENSSL_FORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "detached": ("smime", ()),
    "detached_text": ("smime", ("-text",)),
    "detached_binary": ("smime", ("-binary",)),
    "detached_cms": ("cms", ()),
    "opaque": ("smime", ("-nodetach",)),
    "opaque_cms": ("cms", ("-nodetach",)),
    "pem": ("smime", ("-nodetach", "-outform", "PEM")),
    "der": ("smime", ("-nodetach", "-outform", "DER")),
    "ber_stream": ("cms", ("-stream", "-nodetach", "-outform", "DER")),
    "sha512": ("smime", ("-md", "sha512")),
    "sha1": ("smime", ("-md", "sha1")),
    "rsa_pss": ("cms", ("-keyopt", "rsa_padding_mode:pss")),
    "ec": ("smime", ()),
    "noattr": ("smime", ("-noattr",)),
    "two_signers": ("smime", ()),
    "with_intermediate": ("smime", ()),
    "keyid": ("cms", ("-keyid",)),
    "nocerts": ("smime", ("-nocerts",)),
}
_DERIVED_FORMS = ("crlf_to_lf", "protocol_x_pkcs7", "protocol_pkcs7", "crypto_embedded", "crypto_detached")
FORMS = (*_OPENSSL_FORMS, *_DERIVED_FORMS)
MULTIPART_FORMS = frozenset(FORMS) - {"opaque", "opaque_cms", "pem", "der", "ber_stream"}


def openssl_sign(form: str, content: bytes, signer: Party | None = None, *, pki: TestPKI) -> bytes:
    """``content`` signed in the named ``form`` (see FORMS); ``signer`` defaults to pki.valid (pki.ec for "ec").

    The crypto_* forms come from cryptography (pki.sign_smime), the rest from the real openssl CLI.
    """
    signer = signer or (pki.ec if form == "ec" else pki.valid)
    if form == "crlf_to_lf":
        return openssl_sign("detached", content, signer, pki=pki).replace(b"\r\n", b"\n")
    if form in ("protocol_x_pkcs7", "protocol_pkcs7"):
        flavour = "x-pkcs7" if form == "protocol_x_pkcs7" else "pkcs7"
        return _set_protocol(openssl_sign("detached", content, signer, pki=pki), flavour)
    if form in ("crypto_embedded", "crypto_detached"):
        return p.sign_smime(content, signer.cred, detached=form == "crypto_detached")
    tool, extra = _OPENSSL_FORMS[form]
    signers = [signer, pki.second] if form == "two_signers" else [signer]
    cmd = ["openssl", tool, "-sign"]
    for who in signers:
        cmd += ["-signer", str(who.cert_path), "-inkey", str(who.key_path)]
    cmd += extra
    if form == "with_intermediate":
        cmd += ["-certfile", str(pki.grid.cert_path)]
    out = subprocess.run(cmd, input=content, capture_output=True, check=True).stdout
    if form == "ber_stream":
        assert out[:2] == b"\x30\x80", "openssl -stream did not write indefinite length BER"
    return out


def _set_protocol(blob: bytes, flavour: str) -> bytes:
    """Write both the multipart protocol parameter and the signature part's type in the given spelling."""
    wanted = f"application/{flavour}-signature".encode()
    out = re.sub(rb'protocol="application/(x-)?pkcs7-signature"', b'protocol="' + wanted + b'"', blob, count=1)
    out = re.sub(rb"Content-Type: application/(x-)?pkcs7-signature", b"Content-Type: " + wanted, out, count=1)
    assert out.count(wanted) == 2
    return out


# --- tampering and the oracle -------------------------------------------------------------------------------

def _flip(data: bytes, marker: bytes) -> bytes:
    assert data.count(marker) == 1, f"marker {marker!r} must occur exactly once"
    return data.replace(marker, marker[:-1] + bytes([marker[-1] ^ 0x20]))


def tamper(blob: bytes, form: str, marker: bytes = TAMPER_MARKER) -> bytes:
    """Change one content byte (the case of the marker's last letter) and keep the container parseable."""
    if form in MULTIPART_FORMS or form in ("der", "ber_stream"):
        return _flip(blob, marker)  # clear text part, or the DER content octets themselves
    if form == "pem":
        head, rest = blob.split(b"-----\n", 1)
        body, tail = rest.split(b"-----END", 1)
        return head + b"-----\n" + _flip_base64(body, marker) + b"-----END" + tail
    if form in ("opaque", "opaque_cms"):
        head, _, body = blob.partition(b"\n\n")
        return head + b"\n\n" + _flip_base64(body, marker)
    raise ValueError(f"unknown form {form!r}")


def _flip_base64(body: bytes, marker: bytes) -> bytes:
    """Flip the marker inside base64 text, keeping openssl's 64-column layout, line ends and trailing space."""
    text = body.rstrip()
    eol = b"\r\n" if b"\r\n" in body else b"\n"
    raw = base64.b64encode(_flip(base64.b64decode(text), marker))
    return eol.join(raw[i:i + 64] for i in range(0, len(raw), 64)) + body[len(text):]


def tamper_embedded(blob: bytes, marker: bytes = TAMPER_MARKER) -> bytes:
    """For ``crypto_embedded``: change the copy inside the signature, leaving the clear copy alone."""
    head, sep, rest = blob.partition(b'filename="smime.p7s"\r\n\r\n')
    body, boundary, tail = rest.partition(b"\r\n--")
    return head + sep + _flip_base64(body, marker) + boundary + tail


def inform_of(blob: bytes) -> str:
    """The openssl -inform for a sample: PEM, DER (also BER) or SMIME."""
    return "PEM" if blob.startswith(b"-----BEGIN") else "DER" if blob[:1] == b"\x30" else "SMIME"


def oracle_parses(blob: bytes) -> bool:
    """True iff openssl can read ``blob`` as a CMS structure (no verification at all)."""
    cmd = ["openssl", "cms", "-cmsout", "-noout", "-inform", inform_of(blob)]
    return subprocess.run(cmd, input=blob, capture_output=True, check=False).returncode == 0


def oracle_verify(blob: bytes, ca_dir: Path, *, crl_check: bool, content: bytes | None = None,
                  binary: bool = False) -> bool:
    """True iff ``openssl cms -verify -purpose any [-crl_check_all] -CApath ca_dir`` accepts ``blob``.

    ``binary`` verifies without CRLF canonicalisation, which ``detached_binary`` samples need.
    """
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").write_bytes(blob)
        cmd = ["openssl", "cms", "-verify", "-purpose", "any", "-CApath", str(ca_dir), "-inform", inform_of(blob),
               "-in", f"{tmp}/in", "-out", f"{tmp}/out"]
        if crl_check:
            cmd.append("-crl_check_all")
        if binary:
            cmd.append("-binary")
        if content is not None:
            (Path(tmp) / "content").write_bytes(content)
            cmd += ["-content", f"{tmp}/content"]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0
