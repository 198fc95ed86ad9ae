"""imagesync.sources.hepix.dn against what the real `openssl x509` prints for certificates built here."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagesync.errors import ImagesyncError
from imagesync.sources.hepix import dn, dn_parse

_KEY = ec.generate_private_key(ec.SECP256R1())


def _rdn(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.RelativeDistinguishedName:
    return x509.RelativeDistinguishedName([x509.NameAttribute(oid, value) for oid, value in pairs])


def _name(*rdns: x509.RelativeDistinguishedName) -> x509.Name:
    return x509.Name(list(rdns))


def _certificate(name: x509.Name, tmp_path: Path) -> tuple[x509.Certificate, Path]:
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(_KEY, hashes.SHA256())
    )
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, path


def _openssl_subject(path: Path, *nameopt: str) -> str:
    args = ["openssl", "x509", "-in", str(path), "-noout", "-subject"]
    for option in nameopt:
        args += ["-nameopt", option]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    assert out.startswith("subject=")
    return out.removeprefix("subject=").rstrip("\n")


DC, ORG, OU, CN = (
    NameOID.DOMAIN_COMPONENT,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COMMON_NAME,
)

NAMES = {
    "simple": _name(_rdn((DC, "org")), _rdn((DC, "example")), _rdn((ORG, "Test")), _rdn((CN, "Jane Doe"))),
    "multi-valued": _name(_rdn((DC, "org")), _rdn((OU, "People"), (NameOID.USER_ID, "jdoe")), _rdn((CN, "J"))),
    "utf8": _name(_rdn((DC, "org")), _rdn((CN, "Jöhn Dœ 日本 🙂"))),
    "specials": _name(_rdn((ORG, 'A/B+C\\D,E=F "q" <x>;#')), _rdn((CN, "host/foo.cern.ch+x"))),
    "email uid serial": _name(
        _rdn((NameOID.COUNTRY_NAME, "CH")),
        _rdn((NameOID.USER_ID, "jdoe")),
        _rdn((NameOID.SERIAL_NUMBER, "1234")),
        _rdn((CN, "Jane")),
        _rdn((NameOID.EMAIL_ADDRESS, "jane@example.org")),
    ),
    "unknown oid and spaces": _name(_rdn((x509.ObjectIdentifier("1.2.3.4"), " lead  trail ")), _rdn((CN, "x"))),
    "control chars": _name(_rdn((CN, "tab\there\x01\x7fdel"))),
    "every known attribute": _name(
        *(
            _rdn((x509.ObjectIdentifier(oid), "AB" if short in ("C", "jurisdictionC") else f"v-{short}"))
            for oid, short, _ in dn_parse._ATTRIBUTES
        )
    ),
}


@pytest.mark.parametrize("key", sorted(NAMES))
def test_render_equals_openssl_and_every_form_parses_back(key: str, tmp_path: Path) -> None:
    cert, path = _certificate(NAMES[key], tmp_path)
    ours = dn.render(cert.subject)
    compat = _openssl_subject(path, "compat")
    assert ours == compat
    expected = dn.parse(ours)
    assert dn.parse(compat) == expected
    assert dn.render(expected) == ours
    assert dn.matches(ours, cert.subject.rfc4514_string())
    assert dn.matches(ours, _openssl_subject(path, "RFC2253"))
    assert dn.matches(_openssl_subject(path), ours)  # OpenSSL's default "DC = org, CN = x" form
    assert len(expected.attributes) == sum(len(rdn) for rdn in cert.subject.rdns)


def test_parsed_values_are_the_certificate_values(tmp_path: Path) -> None:
    _, path = _certificate(NAMES["utf8"], tmp_path)
    assert dn.parse(_openssl_subject(path, "compat")).attributes == (("DC", "org"), ("CN", "Jöhn Dœ 日本 🙂"))
    _, path = _certificate(NAMES["specials"], tmp_path)
    assert dn.parse(_openssl_subject(path, "compat")).attributes == (
        ("O", 'A/B+C\\D,E=F "q" <x>;#'),
        ("CN", "host/foo.cern.ch+x"),
    )


@pytest.mark.parametrize(
    ("text", "attributes"),
    [
        ("/DC=ch/DC=cern/CN=host/foo.cern.ch", (("DC", "ch"), ("DC", "cern"), ("CN", "host/foo.cern.ch"))),
        ("/CN=John+Smith", (("CN", "John+Smith"),)),
        ("/CN=a=b,c", (("CN", "a=b,c"),)),
        ("/CN=J\\xc3\\xb6hn", (("CN", "Jöhn"),)),
        ("/CN=Jöhn", (("CN", "Jöhn"),)),
        ("/CN=\\xFF", (("CN", "\udcff"),)),
        ("/CN=a\\b", (("CN", "a\\b"),)),
        ("/CN=a\\xZZ", (("CN", "a\\xZZ"),)),
        ("/CN=", (("CN", ""),)),
        ("/dc=org/cn=x", (("DC", "org"), ("CN", "x"))),
        (
            "/E=a@b/Email=c@d/emailaddress=e@f",
            (("emailAddress", "a@b"), ("emailAddress", "c@d"), ("emailAddress", "e@f")),
        ),
        ("/USERID=u/userId=v", (("UID", "u"), ("UID", "v"))),
        ("/domainComponent=org/organizationName=O/commonName=c", (("DC", "org"), ("O", "O"), ("CN", "c"))),
        ("/2.5.4.3=x/1.2.3.4=y", (("CN", "x"), ("1.2.3.4", "y"))),
        ("/2.5.4.03=x/1.02.0.4=y", (("CN", "x"), ("1.2.0.4", "y"))),
        ("/1." + "0" * 5000 + "=y", (("1.0", "y"),)),
        ("  /CN=x \n", (("CN", "x"),)),
        ("CN=Jane Doe,O=Test,DC=example,DC=org", (("DC", "org"), ("DC", "example"), ("O", "Test"), ("CN", "Jane Doe"))),
        ("CN=Doe\\, Jane,O=Test", (("O", "Test"), ("CN", "Doe, Jane"))),
        ("CN=Doe\\2C Jane;O=Test", (("O", "Test"), ("CN", "Doe, Jane"))),
        ('CN="Doe, \\"Jane\\"",O=Test', (("O", "Test"), ("CN", 'Doe, "Jane"'))),
        ("CN=J\\C3\\B6hn", (("CN", "Jöhn"),)),
        ("CN=x,OU=a+UID=b,DC=org", (("DC", "org"), ("OU", "a"), ("UID", "b"), ("CN", "x"))),
        ("CN=\\ x\\ ", (("CN", " x "),)),
        ("CN=x\\ ", (("CN", "x "),)),
        ("CN=x  ", (("CN", "x"),)),
        ("2.5.4.45=#0102", (("x500UniqueIdentifier", "\x01\x02"),)),
        ("CN=#0C024AC3", (("CN", "J\udcc3"),)),
        ("CN=#0C034AC3B6", (("CN", "Jö"),)),
        ("CN=#1E0400E9004A", (("CN", "éJ"),)),
        ("CN=#0C81024A4A", (("CN", "JJ"),)),
        ("CN=#0C8102", (("CN", "\x0c\udc81\x02"),)),
        ('DC = org, OU = a + UID = b, CN = "x, y"', (("DC", "org"), ("OU", "a"), ("UID", "b"), ("CN", "x, y"))),
    ],
)
def test_parse_forms(text: str, attributes: tuple[tuple[str, str], ...]) -> None:
    assert dn.parse(text).attributes == attributes


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("/DC=ch/DC=cern/CN=host/foo.cern.ch", "/DC=ch/DC=cern/CN=host\\/foo.cern.ch", True),
        ("/DC=org/OU=a+UID=b", "/DC=org/OU=a/UID=b", True),
        ("/DC=org/OU=a+UID=b", "/DC=org/UID=b+OU=a", True),
        ("/DC=org/OU=a/UID=b", "/DC=org/UID=b+OU=a", True),
        ("/DC=org/OU=a/UID=b", "/DC=org/UID=b/OU=a", False),
        ("/DC=org/OU=a+UID=b", "/DC=org/OU=a+UID=c", False),
        ("/DC=org/OU=a+UID=b/CN=x", "/DC=org/OU=a+CN=x/UID=b", False),
        ("/DC=org/DC=example/CN=x", "/DC=example/DC=org/CN=x", False),
        ("/CN=Jane", "/CN=jane", False),
        ("/CN=Jane", "/CN=Jane/CN=Jane", False),
        ("/CN=Jane Doe/O=Test", "O=Test,CN=Jane Doe", True),
        ("/CN=Jane Doe/O=Test", "CN=Jane Doe,O=Test", False),
        ("/C=NL/CN=J\\xC3\\xB6hn", "/c=NL/commonname=Jöhn", True),
        ("/emailAddress=a@b", "/E=a@b", True),
        ("/emailAddress=a@b", "/mail=a@b", False),
        ("/SN=x", "/serialNumber=x", False),
    ],
)
def test_matches(a: str, b: str, same: bool) -> None:
    assert dn.matches(a, b) is same
    assert dn.matches(dn.parse(b), a) is same
    assert (hash(dn.parse(a)) == hash(dn.parse(b))) if same else True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "no equals sign",
        "/",
        "/CN",
        "/FOO=bar",
        "/=x",
        "CN",
        "=x",
        'CN="unterminated',
        "CN=x\\",
        "CN=a,,O=b",
        "CN=a,O",
        "FOO=bar",
        "/CN=\ud800",
        "CN=a;",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(dn.DNError):
        dn.parse(text)


def test_dn_error_is_an_imagesync_error_and_matches_raises_it() -> None:
    assert issubclass(dn.DNError, ImagesyncError)
    with pytest.raises(dn.DNError):
        dn.matches("/CN=x", "nonsense")


def test_dn_value_semantics() -> None:
    flat, grouped = dn.parse("/OU=a/UID=b"), dn.parse("/OU=a+UID=b")
    assert {flat, grouped} == {flat}
    assert flat != "/OU=a/UID=b"
    assert str(grouped) == "/OU=a+UID=b"
    assert str(flat) == "/OU=a/UID=b"


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("a\\x41", "/CN=a\\\\x41"),  # would read back as "aA" if written as OpenSSL does
        ("a\\", "/CN=a\\\\"),
        ("a\\/b", "/CN=a\\\\\\/b"),
        ("C\\D", "/CN=C\\D"),  # unambiguous: written exactly as OpenSSL does
        ("end ", "/CN=end\\x20"),
    ],
)
def test_render_keeps_ambiguous_values_readable(value: str, rendered: str) -> None:
    name = _name(_rdn((CN, value)))
    assert dn.render(name) == rendered
    assert dn.parse(rendered).attributes == (("CN", value),)
    assert dn.parse(dn.render(name).rstrip()).attributes == (("CN", value),)


def test_render_of_bytes_values_and_undecodable_escapes() -> None:
    bits = x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01A\xff", _type=x509.name._ASN1Type.BitString)
    name = x509.Name([bits])
    assert dn.render(name) == "/x500UniqueIdentifier=\\x01A\\xFF"
    assert dn.render(dn.parse("/CN=\\xff\\xC3")) == "/CN=\\xFF\\xC3"
    assert dn.matches(dn.render(name), name.rfc4514_string())
