"""Seeded mutators: bytes (flip, truncate, insert, delete, splice, ...), ASN.1 trees and JSON/YAML documents.

Every operator takes a ``random.Random`` and returns the new value plus a short description, so a failing case
can be reported and replayed from its seed alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from tests.support import asn1tree
from tests.support.asn1tree import Node
from tests.support.hostile import cms_of, replace_cms

INTERESTING_BYTES = (0x00, 0x01, 0x0A, 0x0D, 0x20, 0x22, 0x2D, 0x30, 0x31, 0x7F, 0x80, 0x81, 0xA0, 0xFF)
TOKENS = (b"\r\n", b"\n\n", b"\r\n\r\n", b"--", b"-----BEGIN PKCS7-----\n", b"-----END PKCS7-----\n",
          b"Content-Type: ", b"multipart/signed; boundary=", b"application/pkcs7-mime",
          b"Content-Transfer-Encoding: binary", b"\x30\x80", b"\x00\x00", b"\x30\x82\xff\xff", b"=", b"====",
          b'"', b"{", b"}", b"[", b"]", b":", b",", b"\\u0000", b"\\ud800", b"1e999", b"-0", b"null", b"\xef\xbb\xbf")
Mutation = tuple[bytes, str]


def flip(rng: random.Random, data: bytes, _: Sequence[bytes]) -> Mutation:
    out = bytearray(data)
    count = rng.randint(1, 8)
    for _i in range(count):
        where = rng.randrange(len(out))
        out[where] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.3 else out[where] ^ (1 << rng.randrange(8))
    return bytes(out), f"flip x{count}"


def truncate(rng: random.Random, data: bytes, _: Sequence[bytes]) -> Mutation:
    cut = rng.randrange(len(data))
    if rng.random() < 0.2:
        return data[cut:], f"drop head {cut}"
    return data[:cut], f"truncate at {cut}"


def insert(rng: random.Random, data: bytes, _: Sequence[bytes]) -> Mutation:
    where = rng.randrange(len(data) + 1)
    kind = rng.random()
    if kind < 0.4:
        chunk = rng.choice(TOKENS)
    elif kind < 0.7:
        start = rng.randrange(len(data))
        chunk = data[start:start + rng.randint(1, 64)]
    else:
        chunk = rng.randbytes(rng.randint(1, 32))
    return data[:where] + chunk + data[where:], f"insert {len(chunk)} at {where}"


def delete(rng: random.Random, data: bytes, _: Sequence[bytes]) -> Mutation:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 2, 4, 16, 64, 512)))
    return data[:start] + data[end:], f"delete {start}:{end}"


def duplicate(rng: random.Random, data: bytes, _: Sequence[bytes]) -> Mutation:
    start = rng.randrange(len(data))
    chunk = data[start:start + rng.randint(1, 256)]
    where = rng.randrange(len(data) + 1)
    return data[:where] + chunk + data[where:], f"duplicate {len(chunk)} to {where}"


def splice(rng: random.Random, data: bytes, corpus: Sequence[bytes]) -> Mutation:
    other = rng.choice(corpus)
    head, tail = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
    return data[:head] + other[tail:], f"splice head {head} + other tail {tail}"


def lines(rng: random.Random, data: bytes, _: Sequence[bytes]) -> Mutation:
    if rng.random() < 0.2:
        if b"\r\n" in data:
            return data.replace(b"\r\n", b"\n"), "CRLF -> LF"
        return data.replace(b"\n", b"\r\n"), "LF -> CRLF"
    parts = data.splitlines(keepends=True)
    i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
    choice = rng.randrange(3)
    if choice == 0:
        parts[i], parts[j] = parts[j], parts[i]
    elif choice == 1:
        del parts[i]
    else:
        parts.insert(i, parts[j])
    return b"".join(parts), f"line op {choice} {i}/{j}"


BYTE_OPS: tuple[Callable[[random.Random, bytes, Sequence[bytes]], Mutation], ...] = (
    flip, flip, truncate, insert, insert, delete, duplicate, splice, lines)


def bytes_mutation(rng: random.Random, data: bytes, corpus: Sequence[bytes], *, stack: int = 3) -> Mutation:
    """1..``stack`` byte-level operators applied in a row."""
    notes = []
    for _ in range(rng.randint(1, stack)):
        if not data:
            data, note = rng.choice(corpus)[:rng.randint(0, 64)], "restart from a corpus prefix"
        else:
            data, note = rng.choice(BYTE_OPS)(rng, data, corpus)
        notes.append(note)
    return data, "; ".join(notes)


# --- ASN.1 ---------------------------------------------------------------------------------------------------

OIDS = tuple(bytes.fromhex(h) for h in (
    "2a864886f70d010101", "2a864886f70d01010a", "2a864886f70d01010b", "2a864886f70d010105", "2a864886f70d010104",
    "2a8648ce380401", "608648016503040302", "2a8648ce3d0201", "2a8648ce3d040302", "2a8648ce3d030107", "2b81040099",
    "2b6570", "2b6571", "2b656e", "2b656f", "551d0f", "551d25", "551d13", "551d11", "551d0e", "551d23", "551d1e",
    "2b0601050507010e", "2b0601040182b7234201", "2a864886f70d010701", "2a864886f70d010702", "2a864886f70d010903",
    "2a864886f70d010904", "608648016503040201", "608648016503040203", "60864801650304020c", "2b0e03021a",
    "2a864886f70d0205", "", "80", "ffffffff", "2b06010401"))
TAGS = (b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\x0c", b"\x13", b"\x16", b"\x17", b"\x18", b"\x1e",
        b"\x30", b"\x31", b"\xa0", b"\xa1", b"\xa3", b"\x80", b"\x81", b"\x1f\x81\x00")
VALUES = (b"", b"\x00", b"\xff", b"\x80", b"\x00\x00\x01", b"\xff" * 40, b"\x7f" + b"\xff" * 200, b"991231235959Z",
          b"20500101000000Z", b"00000000000000Z", b"not a time", b"\xff\xfe\x00", b"A" * 300, b"\xc3\x28")


def _primitive_op(rng: random.Random, node: Node) -> str:
    choice = rng.randrange(5)
    if choice == 0 and node.value:
        node.value = rng.randbytes(len(node.value))
        return "random value"
    if choice == 1 and node.value:
        data = bytearray(node.value)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        node.value = bytes(data)
        return "value bit flip"
    if choice == 2:
        node.value = node.value[:rng.randrange(len(node.value) + 1)] + rng.randbytes(rng.choice((0, 0, 1, 7)))
        return "value resized"
    node.value = rng.choice(OIDS) if node.tag == b"\x06" else rng.choice(VALUES)
    return "interesting value"


def _constructed_op(rng: random.Random, node: Node) -> str:
    kids = node.children
    assert kids is not None
    choice = rng.randrange(5)
    if choice == 0 and kids:
        del kids[rng.randrange(len(kids))]
        return "drop child"
    if choice == 1 and kids:
        kids.insert(rng.randrange(len(kids) + 1), kids[rng.randrange(len(kids))])
        return "duplicate child"
    if choice == 2 and len(kids) > 1:
        i, j = rng.randrange(len(kids)), rng.randrange(len(kids))
        kids[i], kids[j] = kids[j], kids[i]
        return "swap children"
    if choice == 3:
        node.indefinite = not node.indefinite
        return "toggle indefinite length"
    kids.insert(rng.randrange(len(kids) + 1), Node(tag=rng.choice(TAGS[:12]), value=rng.choice(VALUES)))
    return "insert child"


def _retag(rng: random.Random, node: Node) -> str:
    tag = rng.choice(TAGS)
    constructed = bool(tag[0] & 0x20)
    if constructed and node.children is None:
        node.children, node.value = [Node(tag=b"\x04", value=node.value)], b""
    elif not constructed and node.children is not None:
        node.value, node.children, node.indefinite = b"".join(asn1tree.encode(c) for c in node.children), None, False
    node.tag = tag
    return f"retag {tag.hex()}"


def asn1_mutation(rng: random.Random, blob: bytes, *, certificates_bias: float = 0.7) -> Mutation | None:
    """Change one node of the CMS inside ``blob`` (most often inside an embedded certificate) and re-wrap it.

    Returns None when ``blob`` holds no parseable CMS tree.
    """
    try:
        tree = asn1tree.parse(cms_of(blob))
    except Exception:  # anything unparseable simply is no candidate
        return None
    certs = asn1tree.certificates(tree)
    scope = rng.choice(certs) if certs and rng.random() < certificates_bias else tree
    node = rng.choice(list(asn1tree.walk(scope)))
    if rng.random() < 0.15:
        note = _retag(rng, node)
    elif node.children is not None:
        note = _constructed_op(rng, node)
    else:
        note = _primitive_op(rng, node)
    where = "certificate" if scope is not tree else "cms"
    return replace_cms(blob, asn1tree.encode(tree)), f"asn1 {where} node {node.path}: {note}"
