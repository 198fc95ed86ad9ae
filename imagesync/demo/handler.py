"""The request handler of the demo list server: content with ETag / Last-Modified / Range, tokens, faults.

:class:`imagesync.demo.server.ListServer` holds the content (a :class:`_Resource` per path), tokens and queued
faults; this module only answers one request at a time from what it holds. The pure helpers (range, conditional
GET, dates) are tested as tables.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from requests.structures import CaseInsensitiveDict

if TYPE_CHECKING:
    from imagesync.demo.server import Fault, _HTTPServer

log = logging.getLogger(__name__)

_JUNK_CHUNK = 1024 * 1024  # what an oversize fault writes per call
_CHUNK = 1024 * 1024  # what content is served in

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class _Abort(Exception):
    """Raised by the handler to drop the connection without any response."""


class Unsatisfiable(Exception):
    """The requested range starts beyond the end of the resource."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=N-`` / ``bytes=N-M`` range; None means serve it all. Raises Unsatisfiable."""
    match = _RANGE.fullmatch((header or "").strip())
    if match is None:
        return None  # absent, multi-range or malformed: RFC 9110 lets a server ignore it
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    if start >= size or end < start:
        raise Unsatisfiable
    return start, min(end, size - 1)


def not_modified(headers: Mapping[str, str], etag: str, mtime: float) -> bool:
    """RFC 9110 conditional GET: If-None-Match decides when present, else If-Modified-Since."""
    inm = headers.get("If-None-Match")
    if inm is not None:
        tags = {tag.strip().removeprefix("W/") for tag in inm.split(",")}
        return "*" in tags or etag in tags
    ims = headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since


def http_date(timestamp: float) -> str:
    """An IMF-fixdate for headers."""
    return formatdate(timestamp, usegmt=True)


def reset_connection(conn: socket.socket) -> None:
    """Make the kernel send RST instead of FIN when ``conn`` closes."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@dataclass(frozen=True)
class _Resource:
    data: bytes | None = None
    file: Path | None = None
    put_at: float = field(default_factory=time.time)

    def describe(self) -> tuple[int, str, float]:
        """Size, strong ETag and modification time, read at request time so a changed file is noticed."""
        if self.data is not None:
            return len(self.data), f'"{hashlib.sha256(self.data).hexdigest()[:32]}"', self.put_at
        assert self.file is not None
        st = self.file.stat()
        key = f"{self.file}:{st.st_size}:{st.st_mtime_ns}".encode()
        return st.st_size, f'"{hashlib.sha256(key).hexdigest()[:32]}"', st.st_mtime

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` .. ``end`` inclusive, at most one chunk in memory."""
        if self.data is not None:
            for offset in range(start, end + 1, _CHUNK):
                yield self.data[offset : min(offset + _CHUNK, end + 1)]
            return
        assert self.file is not None
        with self.file.open("rb") as handle:
            handle.seek(start)
            remaining = end + 1 - start
            while remaining > 0:
                block = handle.read(min(_CHUNK, remaining))
                if not block:
                    return
                remaining -= len(block)
                yield block


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        fault = owner.record(self.command, self.path, dict(self.headers.items()))
        resource = owner.resource(path)
        if fault is not None:
            self._fault(fault, resource, head=head)
        elif not owner.authorised(path, self.headers.get("Authorization")):
            self._simple(401, b"token missing or rejected\n", head, {"WWW-Authenticate": 'Basic realm="imagesync"'})
        elif resource is None:
            self._simple(404, b"not found\n", head)
        else:
            self._content(resource, head=head)

    def _content(self, resource: _Resource, *, head: bool) -> None:
        size, etag, mtime = resource.describe()
        validators = {"ETag": etag, "Last-Modified": http_date(mtime), "Accept-Ranges": "bytes"}
        if not_modified(CaseInsensitiveDict(self.headers.items()), etag, mtime):
            self._simple(304, b"", True, validators)
            return
        try:
            span = byte_range(self.headers.get("Range"), size)
        except Unsatisfiable:
            self._simple(416, b"", head, {"Content-Range": f"bytes */{size}"})
            return
        start, end = span if span is not None else (0, size - 1)
        self.send_response(206 if span is not None else 200)
        for name, value in validators.items():
            self.send_header(name, value)
        if span is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end + 1 - start))
        self.end_headers()
        if not head:
            for block in resource.chunks(start, end):
                self.wfile.write(block)

    def _simple(self, code: int, body: bytes, head: bool, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(code)
        merged = {"Content-Length": str(len(body)), **(headers or {})}
        for name, value in merged.items():
            self.send_header(name, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _fault(self, fault: Fault, resource: _Resource | None, *, head: bool) -> None:
        log.debug("injecting %s on %s", fault.kind, self.path)
        size = resource.describe()[0] if resource else 0
        if fault.kind == "status":
            self._simple(fault.code, fault.body, head, dict(fault.headers))
        elif fault.kind == "reset":
            reset_connection(self.connection)
            raise _Abort  # unwinds past http.server's flush; finish_request then closes the socket
        elif fault.kind == "stall":
            self._announce(size)
            self.server.owner.stopping.wait(fault.seconds)
            self._stream(resource, size)
        elif fault.kind == "hang":
            self.server.owner.stopping.wait(fault.seconds)
            raise _Abort
        elif fault.kind == "truncate":
            self._announce(size)
            self._stream(resource, min(fault.n_bytes, size))
            self.close_connection = True
        elif fault.kind == "oversize":
            self._junk(fault)

    def _announce(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    def _stream(self, resource: _Resource | None, length: int) -> None:
        if resource is not None and length > 0:
            for block in resource.chunks(0, length - 1):
                self.wfile.write(block)

    def _junk(self, fault: Fault) -> None:
        self.close_connection = True
        self.send_response(200)
        if fault.declare_length:
            self.send_header("Content-Length", str(fault.n_bytes))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        block = b"x" * _JUNK_CHUNK
        remaining = fault.n_bytes
        while remaining > 0 and not self.server.owner.stopping.is_set():
            self.wfile.write(block[: min(_JUNK_CHUNK, remaining)])
            remaining -= _JUNK_CHUNK
