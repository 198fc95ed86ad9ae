"""Distinguished names as the grid writes them: render certificate names, parse and compare DN text.

HEPiX lists and configurations write DNs in the OpenSSL one-line ("compat") form, in certificate order:
``/DC=org/DC=example/O=Test/CN=Jane Doe``. What ``openssl x509 -noout -subject -nameopt compat`` prints with
OpenSSL 3.0.19, measured on certificates built by the tests:

- attribute names are OpenSSL's short names (``CN``, ``SN`` = surname, ``GN``, ``serialNumber``, ``emailAddress``,
  ``UID``, ``DC``, ``street``, ``jurisdictionC``...); unknown OIDs are printed dotted;
- ``/`` and ``+`` inside values are escaped with a backslash; a backslash itself is NOT escaped (``C\\D`` prints as
  ``C\\D``), nor are ``=``, ``,``, quotes or spaces;
- every byte outside printable ASCII (0x20-0x7E, so control characters too) is written ``\\xHH`` with uppercase hex,
  one escape per UTF-8 byte (``Jöhn`` -> ``J\\xC3\\xB6hn``);
- members of a multi-valued RDN are joined with ``+`` in DER (sorted) order, which is also the order in which
  cryptography lists them for a parsed certificate (``render`` keeps the order of the Name it is given);
- the default ``-nameopt oneline`` form is different: ``DC = org, C = CH, CN = J\\C3\\B6hn``, commas, certificate
  order, RFC 2253-style quoting.

``render`` reproduces the compat form exactly, except where a value would otherwise be ambiguous to read back: a
backslash that is last in its value or is followed by ``\\``, ``/``, ``+``, ``=``, ``,``, an escaped byte or
``xHH`` is written ``\\\\``, and a space ending the whole DN is written ``\\x20`` (callers strip whitespace).

Order is significant and values are compared exactly, except that the members of a multi-valued RDN may come in
any order (an RDN is a set; ``-nameopt RFC2253`` lists them reversed). Because a flattened form loses the grouping,
that makes ``/OU=a/UID=b`` and ``/UID=b/OU=a`` each equal to ``/OU=a+UID=b`` but not to each other. Escaped bytes that
are not valid UTF-8 are kept as surrogate escapes, so they still compare and render byte for byte.

Reading DN text (the forms ``parse`` accepts, and the attribute names) is in :mod:`imagesync.sources.hepix.dn_parse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from imagesync.sources.hepix import dn_parse
from imagesync.sources.hepix.dn_parse import _SHORT_BY_OID, DNError, Pair, Rdn

__all__ = ["DN", "DNError", "matches", "parse", "render"]

_HEX2 = re.compile(rb"x[0-9A-Fa-f]{2}")


@dataclass(frozen=True, eq=False)
class DN:
    """A parsed DN in certificate order; ``str()`` renders the OpenSSL form. Equality is ``matches``: a
    multi-valued RDN equals the same attributes written as separate RDNs or in another order within the RDN."""

    rdns: tuple[Rdn, ...]

    @property
    def attributes(self) -> tuple[Pair, ...]:
        """The (canonical attribute name, value) pairs of all RDNs, in order."""
        return tuple(pair for rdn in self.rdns for pair in rdn)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DN):
            return NotImplemented
        return _same(self, other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.attributes)))

    def __str__(self) -> str:
        return render(self)


def _boundaries(name: DN) -> set[int]:
    ends, total = set(), 0
    for rdn in name.rdns:
        total += len(rdn)
        ends.add(total)
    return ends


def _same(a: DN, b: DN) -> bool:
    """Equal attributes in equal order, except that members of a multi-valued RDN (on either side) may come in
    any order: an RDN is a set, and OpenSSL's RFC 2253 output lists its members in reverse."""
    if len(a.attributes) != len(b.attributes):
        return False
    start = 0
    for end in sorted(_boundaries(a) & _boundaries(b)):
        if sorted(a.attributes[start:end]) != sorted(b.attributes[start:end]):
            return False
        start = end
    return True

def _to_bytes(value: str) -> bytes:
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _backslash_is_ambiguous(raw: bytes, index: int) -> bool:
    following = raw[index + 1 : index + 2]
    if not following or following in (b"\\", b"/", b"+", b"=", b","):
        return True
    if not 0x20 <= following[0] <= 0x7E:
        return True
    return _HEX2.match(raw, index + 1) is not None


def _render_value(value: str | bytes) -> str:
    raw = value if isinstance(value, bytes) else _to_bytes(value)
    out: list[str] = []
    for index, byte in enumerate(raw):
        char = chr(byte)
        if not 0x20 <= byte <= 0x7E:
            out.append(f"\\x{byte:02X}")
        elif char in "/+":
            out.append("\\" + char)
        elif char == "\\" and _backslash_is_ambiguous(raw, index):
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def _rdns_of(name: x509.Name | DN) -> tuple[tuple[tuple[str, str | bytes], ...], ...]:
    if isinstance(name, DN):
        return name.rdns
    return tuple(
        tuple((_SHORT_BY_OID.get(attr.oid.dotted_string, attr.oid.dotted_string), attr.value) for attr in rdn)
        for rdn in name.rdns
    )


def render(name: x509.Name | DN) -> str:
    """Render a certificate name (or a parsed DN) in OpenSSL 3's one-line form, certificate order.

    Raises nothing.
    """
    text = "".join("/" + "+".join(f"{attr}={_render_value(value)}" for attr, value in rdn) for rdn in _rdns_of(name))
    # A caller that strips the line would lose a trailing space of the last value.
    return text[:-1] + "\\x20" if text.endswith(" ") else text


def parse(text: str) -> DN:
    """Parse DN text in any form :mod:`imagesync.sources.hepix.dn_parse` lists.

    Raises DNError for empty text, text without ``attribute=value``, unknown attribute names or bad escapes.
    """
    return DN(dn_parse.read_rdns(text))


def matches(a: str | DN, b: str | DN) -> bool:
    """True if the two DNs name the same attributes with the same values in the same order.

    Raises DNError if either is text that cannot be parsed.
    """
    return (a if isinstance(a, DN) else parse(a)) == (b if isinstance(b, DN) else parse(b))
