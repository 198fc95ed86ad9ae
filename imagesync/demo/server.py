"""A small HTTPS (or HTTP) server on 127.0.0.1 serving image lists and images, with one-shot fault injection.

Used by ``imagesync demo`` and by the tests: content is put in memory (or streamed from a file for multi-GB
images), answered with ETag / Last-Modified / Range support, optionally behind a token, and faults queued per
path make the next request fail in a chosen way (status, reset, stall, hang, truncation, oversize); a server can
also be made to present another TLS certificate. How one request is answered is in :mod:`imagesync.demo.handler`.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import socket
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from requests.structures import CaseInsensitiveDict

from imagesync.demo.handler import _Abort, _Handler, _Resource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    """One injected failure; build it with the class methods."""

    kind: str
    code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    seconds: float = 0.0
    n_bytes: int = 0
    declare_length: bool = True

    @classmethod
    def status(cls, code: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Fault:
        """Answer with ``code``, ``headers`` (e.g. Retry-After) and ``body``; a given Content-Length wins."""
        return cls("status", code=code, headers=tuple((headers or {}).items()), body=body)

    @classmethod
    def reset(cls) -> Fault:
        """Close the TCP connection abruptly (RST) before any response."""
        return cls("reset")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Send the response headers, then nothing for ``seconds``, then the body."""
        return cls("stall", seconds=seconds)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Send nothing at all, not even a status line, for ``seconds``; then close the connection."""
        return cls("hang", seconds=seconds)

    @classmethod
    def truncate(cls, n_bytes: int) -> Fault:
        """Advertise the full Content-Length, send ``n_bytes`` of the body, close."""
        return cls("truncate", n_bytes=n_bytes)

    @classmethod
    def oversize(cls, n_bytes: int, *, declare_length: bool = True) -> Fault:
        """Serve ``n_bytes`` of junk; without ``declare_length`` the body is delimited by closing the connection."""
        return cls("oversize", n_bytes=n_bytes, declare_length=declare_length)


class ListServer:
    """Threaded HTTPS server on 127.0.0.1; ``port=0`` picks a free port. Use as a context manager."""

    def __init__(self, cert_pem: bytes = b"", key_pem: bytes = b"", *, tls: bool = True, port: int = 0) -> None:
        """Prepare (not start) the server; raises ValueError when TLS is asked for without a credential."""
        if tls and not (cert_pem and key_pem):
            raise ValueError("ListServer: tls=True needs cert_pem and key_pem")
        self._tls = _server_context(cert_pem, key_pem) if tls else None
        self._requested_port = port
        self._lock = threading.Lock()
        self._resources: dict[str, _Resource] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._hits: dict[str, int] = {}
        self._headers: dict[str, CaseInsensitiveDict[str]] = {}
        self._seen: list[tuple[str, str]] = []
        self._tokens: list[tuple[str, str]] = []
        self._connections: set[socket.socket] = set()
        self._accepted = 0
        self.stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind 127.0.0.1 and serve in a background thread."""
        httpd = _HTTPServer(("127.0.0.1", self._requested_port), self, self._tls)
        self._httpd = httpd
        self.stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"ListServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and join every thread."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            # Keep-alive handlers block reading the next request; a shutdown wakes them with EOF.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only meaningful once started)."""
        if self._httpd is None:
            raise RuntimeError("ListServer is not running")
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        """``https://127.0.0.1:PORT/path`` (``http`` when TLS is off)."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{_norm(path)}"

    # -- content and behaviour -------------------------------------------------------------------------
    def put(self, path: str, data: bytes) -> None:
        """Serve ``data`` at ``path`` (replacing what was there)."""
        with self._lock:
            self._resources[_norm(path)] = _Resource(data=bytes(data))

    def put_file(self, path: str, file_path: Path) -> None:
        """Serve the file at ``file_path`` at ``path``, streamed from disk on every request."""
        with self._lock:
            self._resources[_norm(path)] = _Resource(file=Path(file_path))

    def remove(self, path: str) -> None:
        """Stop serving ``path`` (404 from now on)."""
        with self._lock:
            self._resources.pop(_norm(path), None)

    def present(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Show this certificate to every new TLS connection from now on (an untrusted or wrong-host one is a fault
        no single request can inject). Raises ValueError for a server without TLS."""
        if self._tls is None:
            raise ValueError("ListServer: present() needs a TLS server")
        self._tls = _server_context(cert_pem, key_pem)
        if self._httpd is not None:
            self._httpd.context = self._tls

    def require_token(self, path_prefix: str, token: str) -> None:
        """Answer 401 under ``path_prefix`` unless Basic credentials are ``token:x-oauth-basic``."""
        with self._lock:
            self._tokens.append((_norm(path_prefix), token))

    def inject(self, path: str, fault: Fault) -> None:
        """Queue ``fault`` for the next request to ``path``; several faults are consumed in order."""
        with self._lock:
            self._faults.setdefault(_norm(path), deque()).append(fault)

    def hits(self, path: str) -> int:
        """How many requests reached ``path``."""
        with self._lock:
            return self._hits.get(_norm(path), 0)

    def last_headers(self, path: str) -> CaseInsensitiveDict[str]:
        """Request headers of the last request to ``path`` (empty if none)."""
        with self._lock:
            return CaseInsensitiveDict(self._headers.get(_norm(path), {}))

    def requests_seen(self) -> list[tuple[str, str]]:
        """(method, request target) of every request, in order."""
        with self._lock:
            return list(self._seen)

    # -- used by the handler ---------------------------------------------------------------------------
    def record(self, method: str, target: str, headers: Mapping[str, str]) -> Fault | None:
        """Count the request and hand out the next queued fault for its path."""
        path = urlsplit(target).path
        with self._lock:
            self._seen.append((method, target))
            self._hits[path] = self._hits.get(path, 0) + 1
            self._headers[path] = CaseInsensitiveDict(headers)
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def authorised(self, path: str, authorization: str | None) -> bool:
        """Whether ``authorization`` satisfies every token guarding ``path``."""
        with self._lock:
            guards = [token for prefix, token in self._tokens if path.startswith(prefix)]
        for token in guards:
            expected = "Basic " + base64.b64encode(f"{token}:x-oauth-basic".encode()).decode()
            if not hmac.compare_digest(expected.encode(), (authorization or "").encode()):
                return False
        return True

    def resource(self, path: str) -> _Resource | None:
        """What is served at ``path``."""
        with self._lock:
            return self._resources.get(path)

    def accepted(self) -> int:
        """How many connections (TLS handshakes done) the server has taken so far."""
        with self._lock:
            return self._accepted

    def track(self, conn: socket.socket, active: bool) -> None:
        """Remember open connections so :meth:`stop` can wake their handlers."""
        with self._lock:
            if active:
                self._connections.add(conn)
                self._accepted += 1
            else:
                self._connections.discard(conn)


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon threads joined on close: a stopped server leaves no thread behind.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: ListServer, context: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.context = context
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        conn.settimeout(30)
        # The handler writes headers and body separately: with Nagle's algorithm the body of a small response
        # waits ~40 ms for the client's delayed ACK, which dominated any run over many small images.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            # Handshake here, in the connection's thread, so a slow or failing client never blocks accept().
            try:
                conn = self.context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                request.close()
                return
        self.owner.track(conn, True)
        try:
            _Handler(conn, client_address, self)
        except _Abort:
            pass
        except OSError as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        finally:
            self.owner.track(conn, False)
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Tests provoke broken connections on purpose: no tracebacks on stderr.
        log.debug("error serving %s", client_address, exc_info=True)


def _server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files: hand it a private temporary copy, removed at once.
    with tempfile.TemporaryDirectory(prefix="imagesync-tls-") as tmp:
        pem = Path(tmp) / "server.pem"
        pem.write_bytes(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(pem)
    return context


def _norm(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"
