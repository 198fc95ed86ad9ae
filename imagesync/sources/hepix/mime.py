"""Unwrap what list publishers serve into a CMS SignedData blob plus, for detached forms, the signed content.

Publishers produce multipart/signed (with or without openssl's ``-text`` header, either protocol spelling),
opaque application/pkcs7-mime, PEM and DER/BER SignedData. Parsing is done on bytes, not with the ``email``
package, because the signature covers the exact bytes of the first part.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from itertools import pairwise

from imagesync.errors import MalformedSignatureError

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\s*(?P<body>[A-Za-z0-9+/=\s]*?)-----END \1-----", re.DOTALL)
_PEM_LABELS = (b"PKCS7", b"CMS", b"PKCS #7 SIGNED DATA")
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"(?P<q>[^"]+)"|(?P<t>[^;\s]+))', re.IGNORECASE)
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9-]+:")
_SIG_TYPES = (b"application/pkcs7-signature", b"application/x-pkcs7-signature")
_OPAQUE_TYPES = (b"application/pkcs7-mime", b"application/x-pkcs7-mime")


@dataclass(frozen=True)
class Envelope:
    """A SignedData blob (DER or BER) and, if it was detached, the bytes of the signed MIME part."""

    cms: bytes
    detached: bytes | None


def unwrap(blob: bytes) -> Envelope:
    """Find the SignedData in any publisher form. Raises MalformedSignatureError."""
    data = blob.lstrip()
    if not data:
        raise MalformedSignatureError("empty document")
    if data[:1] == b"\x30":
        return Envelope(cms=data, detached=None)
    if data.startswith(b"-----BEGIN"):
        return Envelope(cms=_pem_body(data), detached=None)
    headers, body = split_headers(data)
    if headers is None:
        raise MalformedSignatureError("not a signed list: neither S/MIME nor PEM nor DER (signature: none?)")
    content_type = _header(headers, b"content-type") or b""
    lowered = content_type.lower()
    if lowered.startswith(b"multipart/signed"):
        return _multipart(content_type, body)
    if lowered.startswith(_OPAQUE_TYPES):
        return Envelope(cms=_decode_part(headers, body), detached=None)
    raise MalformedSignatureError(f"unsupported S/MIME content type {_show(content_type)}")


def split_headers(data: bytes) -> tuple[list[bytes] | None, bytes]:
    """Split RFC 822 style headers from the body; ``None`` headers when ``data`` does not start with one."""
    if not _HEADER_LINE.match(data):
        return None, data
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        return None, data
    raw = data[: match.start()].replace(b"\r\n", b"\n")
    # Folded header lines continue with leading white space.
    unfolded = re.sub(rb"\n[ \t]+", b" ", raw)
    return unfolded.split(b"\n"), data[match.end():]


def strip_text_header(content: bytes) -> bytes:
    """Drop openssl ``-text`` MIME headers (``Content-Type: text/plain`` + blank line) from signed content."""
    headers, body = split_headers(content)
    return content if headers is None else body


def _header(headers: list[bytes], name: bytes) -> bytes | None:
    for line in headers:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _multipart(content_type: bytes, body: bytes) -> Envelope:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MalformedSignatureError("multipart/signed without a boundary")
    delimiter = b"--" + (match.group("q") or match.group("t"))
    parts = _split_parts(body, delimiter)
    if len(parts) != 2:
        raise MalformedSignatureError(f"multipart/signed has {len(parts)} parts, expected 2 (content, signature)")
    sig_headers, sig_body = split_headers(parts[1])
    sig_type = (_header(sig_headers or [], b"content-type") or b"").lower()
    if not sig_type.startswith(_SIG_TYPES):
        raise MalformedSignatureError(f"second part is {_show(sig_type) or 'untyped'}, not a PKCS#7 signature")
    return Envelope(cms=_decode_part(sig_headers or [], sig_body), detached=parts[0])


def _split_parts(body: bytes, delimiter: bytes) -> list[bytes]:
    # A delimiter counts only at the start of a line; the line break before it belongs to it. bytes.find
    # instead of a regex: a regex scan of a 1 MB list costs more than verifying its signature.
    bounds: list[tuple[int, int]] = []
    pos = 0
    while (index := body.find(delimiter, pos)) >= 0:
        line = _delimiter_line(body, index, len(delimiter))
        pos = index + 1
        if line is None:
            continue
        bounds.append(line[:2])
        if line[2]:
            return [body[a[1]: b[0]] for a, b in pairwise(bounds)]
        pos = line[1]
    raise MalformedSignatureError("multipart/signed is truncated (no closing boundary)")


def _delimiter_line(body: bytes, index: int, length: int) -> tuple[int, int, bool] | None:
    """(start incl. the preceding line break, end after the line, closing?) or None if not a delimiter line."""
    if index > 0 and body[index - 1: index] != b"\n":
        return None
    start = index - (2 if body[max(index - 2, 0): index] == b"\r\n" else 1) if index > 0 else 0
    after = index + length
    closing = body.startswith(b"--", after)
    after += 2 if closing else 0
    eol = body.find(b"\n", after)
    end = len(body) if eol < 0 else eol + 1
    if body[after:end].strip(b" \t\r\n"):
        return None
    return start, end, closing


def _decode_part(headers: list[bytes], body: bytes) -> bytes:
    encoding = (_header(headers, b"content-transfer-encoding") or b"base64").lower()
    if encoding in (b"binary", b"8bit"):
        return body
    if encoding != b"base64":
        raise MalformedSignatureError(f"unsupported transfer encoding {_show(encoding)}")
    return _b64(body)


def _pem_body(data: bytes) -> bytes:
    match = _PEM.search(data)
    if match is None or match.group(1) not in _PEM_LABELS:
        raise MalformedSignatureError("PEM document holds no PKCS7/CMS block")
    return _b64(match.group("body"))


def _b64(text: bytes) -> bytes:
    # Lenient a2b skips line breaks itself; b64decode(validate=True) regex-checks first and is several times
    # slower on a 1 MB list. Stray characters cannot smuggle anything in: the signature covers the result.
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        raise MalformedSignatureError("signature is not valid base64") from None


def _show(value: bytes) -> str:
    return value.decode("ascii", "replace")[:80]
