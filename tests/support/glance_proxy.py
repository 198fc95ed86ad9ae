"""A streaming reverse proxy on 127.0.0.1 in front of a real Glance, able to answer chosen requests with an error.

The point is to make a real Glance misbehave on cue (a 503 on an upload, a 401 as if the token had expired, an
answer that never comes) without mocking glanceclient. Request bodies, whether sent with Content-Length or
``Transfer-Encoding: chunked`` (glanceclient streams uploads chunked), are forwarded piece by piece, so a big upload
is never held in memory.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

PIECE = 64 * 1024
# Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, never the next one.
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
                  "trailer", "transfer-encoding", "upgrade"})
_NO_BODY = (204, 304)


@dataclass(frozen=True)
class Seen:
    """One request the proxy handled and the status it answered (upstream's or an injected one)."""

    method: str
    path: str
    status: int


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    headers: Mapping[str, str]
    stall: float = 0.0  # > 0: say nothing for this long, then drop the connection (status is not sent)
    before: Callable[[], None] | None = None


class GlanceProxy:
    """Forwards everything to ``upstream_url``; ``url`` is the proxy's equivalent of it. A context manager."""

    def __init__(self, upstream_url: str, *, timeout: float = 300.0) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"GlanceProxy forwards to plain http:// URLs only, not {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.timeout = timeout
        self.requests: list[Seen] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.closing = threading.Event()  # wakes stalled requests when the proxy closes
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{parts.path.rstrip('/')}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="glance-proxy", daemon=True)
        self._thread.start()

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1,
                  headers: Mapping[str, str] | None = None, before: Callable[[], None] | None = None) -> None:
        """Answer the next ``times`` requests of ``method`` whose path+query matches ``path_regex`` (re.search)
        with ``status`` (and ``headers``) instead of forwarding them; their bodies are read and discarded.
        ``before`` runs first, in the handler thread (e.g. to make Keystone refuse the user from now on)."""
        self._add(_Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}), before=before))

    def stall_next(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        """Read the next ``times`` matching requests, answer nothing for ``seconds``, then drop the connection:
        Glance never sees them. Recorded with status 0."""
        self._add(_Fault(method.upper(), re.compile(path_regex), 0, times, {}, stall=seconds))

    def clear(self) -> None:
        """Forget every fault not yet used up."""
        with self._lock:
            self._faults.clear()

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def seen(self, method: str, path_regex: str) -> list[int]:
        """The statuses answered to requests of ``method`` whose path matches ``path_regex``, in order."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [s.status for s in self.requests if s.method == method.upper() and pattern.search(s.path)]

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> GlanceProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- used by the handler threads ------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.path.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append(Seen(method, path, status))


def _error_doc(status: int, message: str) -> dict[str, object]:
    # The shape OpenStack services answer errors in: glanceclient reads error.message from JSON bodies.
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"error": {"code": status, "title": title, "message": message}}


def _handler_for(proxy: GlanceProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(_ProxyHandler):
        owner = proxy

    return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: GlanceProxy
    _answering = False
    protocol_version = "HTTP/1.1"  # keep-alive, as the real Glance offers

    def do_request(self) -> None:
        fault = self.owner._take_fault(self.command, self.path)
        if fault is not None:
            for _ in self._body():
                pass
            self._answer_fault(fault)
            return
        self._answering = False
        try:
            self._forward()
        except (OSError, http.client.HTTPException) as exc:
            self.close_connection = True
            if self._answering:
                raise  # half an answer is out: dropping the connection is all that is left
            self.owner._record(self.command, self.path, 502)
            self._send_simple(502, _error_doc(502, f"GlanceProxy: upstream failed: {exc}"), {})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_request

    def _answer_fault(self, fault: _Fault) -> None:
        if fault.before is not None:
            fault.before()
        self.owner._record(self.command, self.path, fault.status)
        if fault.stall:
            self.owner.closing.wait(fault.stall)
            self.close_connection = True
            return
        self._send_simple(fault.status, _error_doc(fault.status, "injected by GlanceProxy"), fault.headers)

    def _send_simple(self, status: int, doc: object, headers: Mapping[str, str]) -> None:
        body = json.dumps(doc).encode()
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> Iterator[bytes]:
        """The request body as it arrives, de-chunked when sent chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            yield from self._chunked_body()
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = self.rfile.read(min(PIECE, remaining))
            if not piece:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(piece)
            yield piece

    def _chunked_body(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            while size > 0:
                piece = self.rfile.read(min(PIECE, size))
                if not piece:
                    raise ConnectionError("client closed the connection mid-chunk")
                size -= len(piece)
                yield piece
            self.rfile.readline(16)  # the CRLF after each chunk

    def _forward(self) -> None:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        has_body = chunked or int(self.headers.get("Content-Length") or 0) > 0
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        host, port = self.owner.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=self.owner.timeout)
        try:
            upstream.request(self.command, self.path, body=self._body() if has_body else None, headers=headers,
                             encode_chunked=chunked)
            response = upstream.getresponse()
            # Recorded before the client can see the answer, so a test asserting right after a call sees it too.
            self.owner._record(self.command, self.path, response.status)
            self._relay(response)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        length = response.getheader("Content-Length")
        bodiless = self.command == "HEAD" or response.status in _NO_BODY or 100 <= response.status < 200
        self._answering = True
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        rechunk = length is None and not bodiless
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while not bodiless:
            piece = response.read(PIECE)
            if rechunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            elif piece:
                self.wfile.write(piece)
            if not piece:
                break
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test output should show assertions, not an access log
