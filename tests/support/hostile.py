"""Hostile variants of real signed samples: swap the CMS blob inside any publisher form, damage certificates.

Embedded certificates are not covered by the content signature, so anyone on the path can change them; these
helpers make such messages from the real openssl samples of :mod:`tests.support.samples`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from imagesync.sources.hepix.mime import unwrap
from tests.support import asn1tree
from tests.support.asn1tree import Node

_B64_LINE = re.compile(rb"[A-Za-z0-9+/=]+\r?\n")
OID_KEY_USAGE = bytes.fromhex("551d0f")
OID_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")
OID_UNKNOWN = bytes.fromhex("2b0601040182b7234201")  # 1.3.6.1.4.1.39843.66.1, assigned to nothing


def cms_of(blob: bytes) -> bytes:
    """The CMS SignedData blob inside a sample of any form."""
    return unwrap(blob).cms


def replace_cms(blob: bytes, der: bytes) -> bytes:
    """``blob`` with its CMS SignedData replaced by ``der``, in the same form (DER, PEM, S/MIME base64)."""
    old = cms_of(blob)
    if blob[:1] == b"\x30":
        return der
    lines = blob.splitlines(keepends=True)
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and _B64_LINE.fullmatch(lines[end]):
            end += 1
        if end > start and _decodes_to(b"".join(lines[start:end]), old):
            eol = b"\r\n" if lines[start].endswith(b"\r\n") else b"\n"
            text = base64.b64encode(der)
            body = b"".join(text[i:i + 64] + eol for i in range(0, len(text), 64))
            return b"".join([*lines[:start], body, *lines[end:]])
        start = end + 1
    raise ValueError("no base64 block holding the CMS found")


def _decodes_to(text: bytes, expected: bytes) -> bool:
    try:
        return binascii.a2b_base64(text) == expected
    except binascii.Error:
        return False


def change_certificate(blob: bytes, change: Callable[[Node], None], index: int = 0) -> bytes:
    """Apply ``change`` to embedded certificate ``index`` (a tree node) and re-encode the whole message."""
    tree = asn1tree.parse(cms_of(blob))
    change(asn1tree.certificates(tree)[index])
    return replace_cms(blob, asn1tree.encode(tree))


def find(node: Node, predicate: Callable[[Node], bool]) -> Node:
    """The first node under ``node`` (depth first) for which ``predicate`` holds. Raises LookupError."""
    for candidate in asn1tree.walk(node):
        if predicate(candidate):
            return candidate
    raise LookupError("no such node")


def oid_node(cert: Node, oid: bytes) -> Node:
    """The OBJECT IDENTIFIER node with content ``oid`` inside ``cert``."""
    return find(cert, lambda n: n.tag == b"\x06" and n.value == oid)


def extension_value(cert: Node, oid: bytes) -> Node:
    """The OCTET STRING holding the DER value of the extension ``oid``."""
    extension = find(cert, lambda n: _is_extension(n, oid))
    assert extension.children is not None
    return extension.children[-1]


def _is_extension(node: Node, oid: bytes) -> bool:
    kids = node.children
    return kids is not None and len(kids) >= 2 and kids[0].tag == b"\x06" and kids[0].value == oid
