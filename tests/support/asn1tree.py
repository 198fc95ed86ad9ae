"""A minimal BER/DER tree: parse any TLV structure, change a node, encode it again with fixed-up lengths.

asn1crypto would re-encode what it understands; hostile-input tests need the opposite, a structure-blind tool
that can put any bytes, tag or OID anywhere (inside an embedded certificate, say) and still produce a container
whose outer lengths are right, so the damage reaches the deep parsers instead of the first length check.
Indefinite-length (BER, ``openssl -stream``) nodes stay indefinite; everything else is written with minimal
definite lengths, which is what openssl wrote in the first place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

_CONSTRUCTED = 0x20


@dataclass
class Node:
    """One TLV: ``tag`` is the identifier octets as written; ``children`` for constructed nodes, else ``value``."""

    tag: bytes
    value: bytes = b""
    children: list[Node] | None = None
    indefinite: bool = False
    path: tuple[int, ...] = field(default=(), compare=False)

    @property
    def constructed(self) -> bool:
        return bool(self.tag[0] & _CONSTRUCTED)


def parse(data: bytes) -> Node:
    """Parse one complete TLV tree from ``data``. Raises ValueError on anything malformed or trailing bytes."""
    node, end = _parse_at(data, 0, ())
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes")
    return node


def encode(node: Node) -> bytes:
    """The node as BER/DER again; lengths recomputed from the (possibly changed) contents."""
    body = node.value if node.children is None else b"".join(encode(child) for child in node.children)
    if node.indefinite:
        return node.tag + b"\x80" + body + b"\x00\x00"
    return node.tag + encode_length(len(body)) + body


def encode_length(length: int) -> bytes:
    """DER length octets for ``length``."""
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def walk(node: Node) -> Iterator[Node]:
    """``node`` and all its descendants, depth first."""
    yield node
    for child in node.children or ():
        yield from walk(child)


def certificates(root: Node) -> list[Node]:
    """The certificate nodes of a CMS ContentInfo(SignedData) tree ([] if it has none or is not one)."""
    try:
        signed = _children(_children(root)[1])[0]
        bag = next(c for c in _children(signed) if c.tag == b"\xa0")
    except (IndexError, StopIteration, ValueError):
        return []
    return [c for c in _children(bag) if c.tag == b"\x30"]


def _children(node: Node) -> list[Node]:
    if node.children is None:
        raise ValueError("primitive node")
    return node.children


def _parse_at(data: bytes, offset: int, path: tuple[int, ...]) -> tuple[Node, int]:
    tag, pos = _tag(data, offset)
    if pos >= len(data):
        raise ValueError("truncated length")
    first = data[pos]
    pos += 1
    if first == 0x80:
        if not tag[0] & _CONSTRUCTED:
            raise ValueError("indefinite length on a primitive")
        return _parse_indefinite(data, tag, pos, path)
    length = first
    if first > 0x80:
        count = first & 0x7F
        if count > 4 or pos + count > len(data):  # nothing we parse is 4 GiB
            raise ValueError("bad long-form length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("length beyond the data")
    if not tag[0] & _CONSTRUCTED:
        return Node(tag=tag, value=data[pos:end], path=path), end
    children: list[Node] = []
    while pos < end:
        child, pos = _parse_at(data[:end], pos, (*path, len(children)))
        children.append(child)
    return Node(tag=tag, children=children, path=path), end


def _parse_indefinite(data: bytes, tag: bytes, pos: int, path: tuple[int, ...]) -> tuple[Node, int]:
    children: list[Node] = []
    while True:
        if data[pos:pos + 2] == b"\x00\x00":
            return Node(tag=tag, children=children, indefinite=True, path=path), pos + 2
        if pos >= len(data):
            raise ValueError("indefinite length without end-of-contents")
        child, pos = _parse_at(data, pos, (*path, len(children)))
        children.append(child)


def _tag(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset >= len(data):
        raise ValueError("truncated tag")
    end = offset + 1
    if data[offset] & 0x1F == 0x1F:
        while end < len(data) and data[end] & 0x80:
            end += 1
        end += 1
        if end > len(data):
            raise ValueError("truncated high tag number")
    return data[offset:end], end
