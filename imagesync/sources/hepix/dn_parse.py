"""Reading DN text: the attribute names and their spellings, and the parsers of the slash and comma forms.

Apart from :mod:`imagesync.sources.hepix.dn`, which owns the DN value, its comparison and the rendering of
certificate names, because reading every form people write is most of the work and none of rendering's; the
attribute table is here since reading needs all its spellings, while rendering only asks it for short names.
This module yields the RDNs; :func:`imagesync.sources.hepix.dn.parse` wraps them in a DN.

``read_rdns`` accepts the OpenSSL 3 form, the older form with unescaped UTF-8 and unescaped ``/`` (a ``/`` or ``+`` only
separates when ``name=`` follows, with a known attribute name or a dotted OID), multi-valued RDNs written with ``+``
or flattened with ``/`` (they compare equal), names in any case and common aliases, the RFC 4514 comma form
(reversed order; ``#hex`` values as DER strings or, as cryptography writes them, raw bytes) and OpenSSL's
``-nameopt oneline`` comma form (recognised by ``" = "`` around every ``=``; certificate order).
"""

from __future__ import annotations

import re

from imagesync.errors import ImagesyncError

# (dotted OID, OpenSSL short name, other accepted spellings). Short names checked against `openssl x509 -subject`.
_ATTRIBUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("2.5.4.3", "CN", ("commonName",)),
    ("2.5.4.4", "SN", ("surname",)),
    ("2.5.4.5", "serialNumber", ()),
    ("2.5.4.6", "C", ("countryName",)),
    ("2.5.4.7", "L", ("localityName",)),
    ("2.5.4.8", "ST", ("stateOrProvinceName", "S")),
    ("2.5.4.9", "street", ("streetAddress",)),
    ("2.5.4.10", "O", ("organizationName",)),
    ("2.5.4.11", "OU", ("organizationalUnitName",)),
    ("2.5.4.12", "title", ()),
    ("2.5.4.13", "description", ()),
    ("2.5.4.15", "businessCategory", ()),
    ("2.5.4.16", "postalAddress", ()),
    ("2.5.4.17", "postalCode", ()),
    ("2.5.4.18", "postOfficeBox", ()),
    ("2.5.4.19", "physicalDeliveryOfficeName", ()),
    ("2.5.4.20", "telephoneNumber", ()),
    ("2.5.4.41", "name", ()),
    ("2.5.4.42", "GN", ("givenName", "G")),
    ("2.5.4.43", "initials", ()),
    ("2.5.4.44", "generationQualifier", ()),
    ("2.5.4.45", "x500UniqueIdentifier", ()),
    ("2.5.4.46", "dnQualifier", ()),
    ("2.5.4.54", "dmdName", ()),
    ("2.5.4.65", "pseudonym", ()),
    ("2.5.4.72", "role", ()),
    ("2.5.4.97", "organizationIdentifier", ()),
    ("0.9.2342.19200300.100.1.1", "UID", ("userId", "USERID")),
    ("0.9.2342.19200300.100.1.3", "mail", ("rfc822Mailbox",)),
    ("0.9.2342.19200300.100.1.25", "DC", ("domainComponent",)),
    ("1.2.840.113549.1.9.1", "emailAddress", ("Email", "E")),
    ("1.2.840.113549.1.9.2", "unstructuredName", ()),
    ("1.2.840.113549.1.9.8", "unstructuredAddress", ()),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL", ("jurisdictionLocalityName",)),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST", ("jurisdictionStateOrProvinceName",)),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC", ("jurisdictionCountryName",)),
)
_SHORT_BY_OID = {oid: short for oid, short, _ in _ATTRIBUTES}
_CANONICAL = {spelling.lower(): short for oid, short, aliases in _ATTRIBUTES for spelling in (oid, short, *aliases)}
_OID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)+\Z")
_SLASH_ATTR = re.compile(r"([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)=")
_SLASH_ESCAPED = frozenset("\\/+=,")

Pair = tuple[str, str]
Rdn = tuple[Pair, ...]


class DNError(ImagesyncError):
    """A distinguished name could not be parsed."""


def _canonical(name: str) -> str | None:
    if _OID_RE.match(name):
        dotted = ".".join(arc.lstrip("0") or "0" for arc in name.split("."))
        return _SHORT_BY_OID.get(dotted, dotted)
    return _CANONICAL.get(name.lower())


def _from_bytes(raw: bytes | bytearray) -> str:
    return bytes(raw).decode("utf-8", "surrogateescape")


def _slash_boundary(text: str, index: int) -> bool:
    match = _SLASH_ATTR.match(text, index + 1)
    return match is not None and _canonical(match.group(1)) is not None


def _slash_value(text: str, pos: int) -> tuple[str, int]:
    """Read one value from ``pos``; return it and the index of the separator that ends it (or len(text))."""
    buf = bytearray()
    while pos < len(text):
        char = text[pos]
        if char == "\\" and text[pos + 1 : pos + 2] == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[pos + 2 : pos + 4]):
            buf.append(int(text[pos + 2 : pos + 4], 16))
            pos += 4
            continue
        if char == "\\" and text[pos + 1 : pos + 2] in _SLASH_ESCAPED:
            buf += text[pos + 1].encode()
            pos += 2
            continue
        if char in "/+" and _slash_boundary(text, pos):
            break
        buf += _literal(char)
        pos += 1
    return _from_bytes(buf), pos


def _literal(char: str) -> bytes:
    try:
        return char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise DNError(f"DN contains an unencodable character {char!r}") from exc


def _attribute_name(name: str, text: str) -> str:
    canonical = _canonical(name)
    if canonical is None:
        raise DNError(f"unknown attribute {name!r} in DN {text!r}")
    return canonical


def _parse_slash(text: str) -> tuple[Rdn, ...]:
    rdns: list[Rdn] = []
    current: list[Pair] = []
    pos = 1
    while True:
        match = _SLASH_ATTR.match(text, pos)
        if match is None:
            raise DNError(f"expected attribute=value at offset {pos} of DN {text!r}")
        value, pos = _slash_value(text, match.end())
        current.append((_attribute_name(match.group(1), text), value))
        if pos >= len(text) or text[pos] == "/":
            rdns.append(tuple(current))
            current = []
        if pos >= len(text):
            return tuple(rdns)
        pos += 1


_COMMA_ATTR = re.compile(r"([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)( *)=( *)")
_HEX_VALUE = re.compile(r"#((?:[0-9A-Fa-f]{2})+)(?=\s*(?:[,;+]|\Z))")
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")


def _comma_escape(text: str, pos: int, buf: bytearray) -> int:
    """Decode the escape whose backslash is at ``pos`` into ``buf``; return the index after it."""
    if _HEX_PAIR.match(text, pos + 1):
        buf.append(int(text[pos + 1 : pos + 3], 16))
        return pos + 3
    if pos + 1 >= len(text):
        raise DNError(f"DN ends with a lone backslash: {text!r}")
    buf += _literal(text[pos + 1])
    return pos + 2


_DER_TEXT = {0x0C: "utf-8", 0x12: "", 0x13: "", 0x14: "", 0x16: "", 0x1A: "", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _hex_value(raw: bytes) -> bytes:
    """A ``#hex`` value: RFC 4514 (and OpenSSL) put the DER of a string there, cryptography the raw bytes of a
    non-string value. Returns the bytes the slash form would show."""
    if len(raw) < 2 or raw[0] not in _DER_TEXT:
        return raw
    length, offset = raw[1], 2
    if length & 0x80:
        offset = 2 + (length & 0x7F)
        length = int.from_bytes(raw[2:offset], "big")
    if offset > len(raw) or length != len(raw) - offset:
        return raw
    content, codec = raw[offset:], _DER_TEXT[raw[0]]
    try:
        return content.decode(codec).encode() if codec else content
    except UnicodeDecodeError:
        return content


def _comma_quoted(text: str, pos: int) -> tuple[str, int]:
    buf = bytearray()
    pos += 1
    while pos < len(text) and text[pos] != '"':
        if text[pos] == "\\":
            pos = _comma_escape(text, pos, buf)
        else:
            buf += _literal(text[pos])
            pos += 1
    if pos >= len(text):
        raise DNError(f"unterminated quoted value in DN {text!r}")
    return _from_bytes(buf), pos + 1


def _comma_value(text: str, pos: int) -> tuple[str, int]:
    if text.startswith('"', pos):
        return _comma_quoted(text, pos)
    hex_value = _HEX_VALUE.match(text, pos)
    if hex_value:
        return _from_bytes(_hex_value(bytes.fromhex(hex_value.group(1)))), hex_value.end()
    buf = bytearray()
    keep = 0  # unescaped trailing spaces are not part of the value (RFC 4514)
    while pos < len(text) and text[pos] not in ",;+":
        if text[pos] == "\\":
            pos = _comma_escape(text, pos, buf)
            keep = len(buf)
            continue
        buf += _literal(text[pos])
        if text[pos] != " ":
            keep = len(buf)
        pos += 1
    return _from_bytes(buf[:keep]), pos


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_comma(text: str) -> tuple[Rdn, ...]:
    rdns: list[list[Pair]] = [[]]
    spaced: list[bool] = []
    pos = 0
    while True:
        match = _COMMA_ATTR.match(text, pos)
        if match is None:
            raise DNError(f"expected attribute=value at offset {pos} of DN {text!r}")
        value, pos = _comma_value(text, match.end())
        rdns[-1].append((_attribute_name(match.group(1), text), value))
        spaced.append(bool(match.group(2) and match.group(3)))
        pos = _skip_spaces(text, pos)
        if pos >= len(text):
            break
        if text[pos] not in ",;+":
            raise DNError(f"expected a separator at offset {pos} of DN {text!r}")
        if text[pos] != "+":
            rdns.append([])
        pos = _skip_spaces(text, pos + 1)
    ordered = tuple(tuple(rdn) for rdn in rdns)
    # OpenSSL's `-nameopt oneline` writes " = " and keeps certificate order; RFC 4514 text is reversed.
    return ordered if all(spaced) else ordered[::-1]


def _trim(text: str) -> str:
    body = text.lstrip()
    trimmed = body.rstrip()
    backslashes = len(trimmed) - len(trimmed.rstrip("\\"))
    # RFC 4514 writes a trailing space of the last value as "\ ": that space is not surrounding whitespace.
    if backslashes % 2 and len(trimmed) < len(body):
        return body[: len(trimmed) + 1]
    return trimmed


def read_rdns(text: str) -> tuple[Rdn, ...]:
    """The RDNs, in certificate order, of DN text in any form listed in the module docstring.

    Raises DNError for empty text, text without ``attribute=value``, unknown attribute names or bad escapes.
    """
    stripped = _trim(text)
    if "=" not in stripped:
        raise DNError(f"not a distinguished name: {text!r}")
    if stripped.startswith("/"):
        return _parse_slash(stripped)
    return _parse_comma(stripped)
