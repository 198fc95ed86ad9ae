"""Relay one HTTP request, body streamed both ways, from a BaseHTTPRequestHandler to an upstream server.

Used by the fake Harbor to pass ``/v2/...`` to a real registry. Nothing is held in memory whole: request bodies (with
Content-Length or chunked) and response bodies (with Content-Length, chunked or read-to-close) move in pieces.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

PIECE = 64 * 1024
# Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, never the next one.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})
_NO_BODY = (204, 304)


class UpstreamUnavailable(OSError):
    """The upstream could not be reached or did not answer; nothing has been sent back to the client yet."""


@dataclass(frozen=True)
class Upstream:
    """Where to relay to: ``http://host:port`` or ``https://host:port`` (then ``tls`` verifies it)."""

    scheme: str
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    timeout: float = 300.0

    @classmethod
    def parse(cls, base_url: str, tls: ssl.SSLContext | None = None, timeout: float = 300.0) -> Upstream:
        """Raises ValueError for anything but an http(s) URL with a host and no path."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise ValueError(f"upstream must be http(s)://host[:port], not {base_url!r}")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, parts.port or default, tls, timeout)

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


def request_body(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    """The request body as it arrives, de-chunked when sent chunked. Raises ConnectionError if the client quits."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        yield from _chunked_body(handler)
        return
    remaining = int(handler.headers.get("Content-Length") or 0)
    while remaining > 0:
        piece = handler.rfile.read(min(PIECE, remaining))
        if not piece:
            raise ConnectionError("client closed the connection mid-body")
        remaining -= len(piece)
        yield piece


def _chunked_body(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    while True:
        size = int(handler.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        while size > 0:
            piece = handler.rfile.read(min(PIECE, size))
            if not piece:
                raise ConnectionError("client closed the connection mid-chunk")
            size -= len(piece)
            yield piece
        handler.rfile.readline(16)  # the CRLF after each chunk


def relay(handler: BaseHTTPRequestHandler, upstream: Upstream, public_origin: str) -> int:
    """Send ``handler``'s request to ``upstream`` and its answer back; return the upstream status.

    Only the host changes: the Host header going up, and a Location header pointing at ``upstream.origin`` coming
    back (rewritten to ``public_origin``) so that a client following a blob-upload Location stays on the front
    server, as it does with Harbor. Raises UpstreamUnavailable before any answer went back, OSError or
    http.client.HTTPException when the relaying fails after that (the client then holds half an answer).
    """
    chunked = "chunked" in handler.headers.get("Transfer-Encoding", "").lower()
    has_body = chunked or int(handler.headers.get("Content-Length") or 0) > 0
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
    headers["Host"] = f"{upstream.host}:{upstream.port}"
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    connection = upstream.connect()
    try:
        try:
            connection.request(handler.command, handler.path, body=request_body(handler) if has_body else None,
                               headers=headers, encode_chunked=chunked)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamUnavailable(f"{upstream.origin}: {exc}") from exc
        _send_back(handler, response, upstream.origin, public_origin)
        return response.status
    finally:
        connection.close()


def _send_back(handler: BaseHTTPRequestHandler, response: http.client.HTTPResponse, upstream_origin: str,
               public_origin: str) -> None:
    bodiless = handler.command == "HEAD" or response.status in _NO_BODY or 100 <= response.status < 200
    length = response.getheader("Content-Length")
    handler.send_response_only(response.status, response.reason)
    for name, value in response.getheaders():
        if name.lower() in HOP_BY_HOP:
            continue
        moved = name.lower() == "location" and value.startswith(upstream_origin)
        handler.send_header(name, public_origin + value[len(upstream_origin):] if moved else value)
    rechunk = length is None and not bodiless
    if rechunk:
        handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    while not bodiless:
        piece = response.read(PIECE)
        if rechunk:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        elif piece:
            handler.wfile.write(piece)
        if not piece:
            break
    handler.wfile.flush()
