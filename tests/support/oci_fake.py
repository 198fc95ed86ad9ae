"""A scripted registry over HTTPS on 127.0.0.1, for the answers docker-registry 2.8 never gives: paginated tag
lists (it ignores ``n``), a HEAD without ``Docker-Content-Digest``, a referrers API, a lying digest header, an
oversized manifest. Each route answers with the status, headers and body the test set; every request is recorded.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.tls import ServerPKI


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ScriptedRegistry:
    """``routes`` maps a request path with its query (``/v2/r/tags/list?n=1000``) to an Answer; others are 404."""

    def __init__(self, pki: ServerPKI) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.socket = _context(pki).wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _answer(self, method: str, path: str) -> Answer:
        with self._lock:
            self.requests.append((method, path))
            return self.routes.get(path, Answer(404, {"Content-Type": "text/plain"}, b"404 page not found"))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, with_body: bool) -> None:
                answer = fake._answer(self.command, self.path)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(answer.body)

            def do_GET(self) -> None:
                self._reply(True)

            def do_HEAD(self) -> None:
                self._reply(False)

        return Handler


def _context(pki: ServerPKI) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_bytes(pki.cert_pem)
        key.write_bytes(pki.key_pem)
        context.load_cert_chain(cert, key)
    return context
