"""A webhook receiver on 127.0.0.1 (http.server in a thread, optionally HTTPS): records every POST and answers
from a script of status codes (then 200), so tests see exactly what imagesync sent and how often."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def signed_with(self, secret: str) -> bool:
        """Whether X-Imagesync-Signature is the HMAC-SHA256 of the raw body under ``secret`` (checked as a receiver
        should: recomputed, compared in constant time)."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Imagesync-Signature", ""))


class Receiver:
    """Use as a context manager; ``answers`` are the statuses of the first requests, 200 after them."""

    def __init__(self, *answers: int, cert_pem: bytes = b"", key_pem: bytes = b"") -> None:
        self.deliveries: list[Delivery] = []
        self._answers = deque(answers)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if cert_pem:
            self._httpd.socket = _context(cert_pem, key_pem).wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self.scheme = "https" if cert_pem else "http"

    def url(self, path: str = "/hooks/imagesync/T0K3N-in-path") -> str:
        return f"{self.scheme}://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _answer(self, delivery: Delivery) -> int:
        with self._lock:
            self.deliveries.append(delivery)
            return self._answers.popleft() if self._answers else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = receiver._answer(Delivery(self.path, dict(self.headers.items()), body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def _context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)
    return context
