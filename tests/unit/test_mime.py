"""Unwrapping publisher forms to SignedData; malformed containers give MalformedSignatureError."""

from __future__ import annotations

import base64

import pytest

from imagesync.errors import MalformedSignatureError
from imagesync.sources.hepix.mime import strip_text_header, unwrap

SIG = base64.b64encode(b"\x30\x03\x02\x01\x01").decode()


def multipart(protocol: str, body: str, eol: str = "\r\n") -> bytes:
    text = (f'MIME-Version: 1.0\nContent-Type: multipart/signed; protocol="{protocol}"; micalg="sha-256"; '
            f'boundary="----B1"\n\nThis is an S/MIME signed message\n\n------B1\n{body}\n------B1\n'
            f'Content-Type: {protocol}; name="smime.p7s"\nContent-Transfer-Encoding: base64\n\n{SIG}\n\n------B1--\n')
    return text.replace("\n", eol).encode()


@pytest.mark.parametrize("protocol", ["application/pkcs7-signature", "application/x-pkcs7-signature"])
@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_multipart_both_protocols_and_line_endings(protocol: str, eol: str) -> None:
    env = unwrap(multipart(protocol, '{"a": 1}', eol))
    assert env.cms == b"\x30\x03\x02\x01\x01"
    assert env.detached == b'{"a": 1}'


def test_opaque_pem_der() -> None:
    der = b"\x30\x03\x02\x01\x01"
    opaque = (b"MIME-Version: 1.0\nContent-Type: application/pkcs7-mime; smime-type=signed-data\n"
              b"Content-Transfer-Encoding: base64\n\n" + SIG.encode() + b"\n")
    pem = b"-----BEGIN PKCS7-----\n" + SIG.encode() + b"\n-----END PKCS7-----\n"
    for blob in (opaque, pem, der, b"\n  " + der):
        env = unwrap(blob)
        assert env.cms == der and env.detached is None


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "empty"),
    (b'{"hv:imagelist": {}}', "neither S/MIME nor PEM nor DER"),
    (b"Content-Type: text/html\n\n<html>", "unsupported S/MIME content type"),
    (b"Content-Type: multipart/signed\n\nx", "without a boundary"),
    (multipart("application/pkcs7-signature", "x")[:-12], "truncated"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no PKCS7/CMS block"),
    (b"Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: base64\n\n!!notbase64!!", "not valid base64"),
])
def test_malformed(blob: bytes, message: str) -> None:
    with pytest.raises(MalformedSignatureError, match=message):
        unwrap(blob)


def test_strip_text_header() -> None:
    assert strip_text_header(b"Content-Type: text/plain\r\n\r\n{\"a\":1}") == b'{"a":1}'
    assert strip_text_header(b'{"a":1}') == b'{"a":1}'
