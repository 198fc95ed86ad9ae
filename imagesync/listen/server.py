"""The HTTP(S) endpoint of ``imagesync listen``: checks each request, queues the sources it names, answers.

Every request is judged in the same order, and whatever it fails at changes nothing:

1. path and method (404, 405); ``GET /healthz`` answers at once, without a secret (it shows no secret);
2. a ``Content-Length`` (411) no larger than ``max_body`` (413, the body left unread and the connection closed);
3. the proof of the secret (:mod:`imagesync.listen.auth`, 401), checked on the raw body before it is parsed;
4. the body's shape (400) and, for ``/v1/sync``, a configured source (404);
5. room in the queue (503 with ``Retry-After``), then 202 with the sources queued (200 when none concern us).

Answers are small JSON objects; a refusal's ``error`` is one line, and each is logged with the peer's address.
A slow or silent client is cut off after ``REQUEST_TIMEOUT`` seconds, so it cannot hold a thread. TLS, when
configured, is negotiated in the request's own thread: a client that never finishes its handshake holds no one
else up.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from imagesync.config.listen import ListenSettings
from imagesync.config.registries import RegistrySettings
from imagesync.errors import ImagesyncError
from imagesync.listen import auth, events
from imagesync.listen.queue import Queue, QueueFull
from imagesync.util.textsafe import one_line

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = 10.0
_RETRY_AFTER = "30"


@dataclass(frozen=True)
class Endpoint:
    """What the handlers need: the settings, the sources they may name, the queue, and whom to wake."""

    settings: ListenSettings
    sources: Sequence[str]  # every name /v1/sync accepts
    registries: Sequence[RegistrySettings]
    queue: Queue
    wake: Callable[[], None]  # tells the runner a source was queued
    health: Callable[[], dict[str, Any]]
    clock: Callable[[], float] = time.time


class Refused(Exception):
    """A request that changes nothing: the status and the one-line reason sent back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: Endpoint, tls: ssl.SSLContext | None) -> None:
        self.endpoint = endpoint
        self.tls = tls
        if ":" in endpoint.settings.address:
            self.address_family = socket.AF_INET6
        super().__init__((endpoint.settings.address, endpoint.settings.port), Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(REQUEST_TIMEOUT)
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.warning("listen peer=%s TLS handshake failed: %s", client_address[0], one_line(str(exc)))
                return
        super().finish_request(request, client_address)


def tls_context(settings: ListenSettings) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP. Raises ssl.SSLError / OSError for unusable files."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "imagesync-listen"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self._refuse(Refused(404, f"no such endpoint {self.path.split('?', 1)[0]}"))
            return
        self._answer(200, self.server.endpoint.health())

    def do_POST(self) -> None:
        try:
            kind = self._kind()
            body = self._body()
            endpoint = self.server.endpoint
            if not auth.authentic(endpoint.settings.secret or "", dict(self.headers.items()), body):
                raise Refused(401, "not authenticated: give X-Imagesync-Signature or Authorization")
            sources = _sources(kind, _json(body), endpoint)
            if sources:
                try:
                    endpoint.queue.add(sources, endpoint.clock())
                except QueueFull as exc:
                    raise Refused(503, f"queue full: {exc}") from None
                except ImagesyncError as exc:
                    raise Refused(503, exc.one_line()) from None
                endpoint.wake()
        except Refused as refused:
            self._refuse(refused)
            return
        log.info("listen peer=%s event=%s queued=%s", self.client_address[0], kind, ",".join(sources) or "-")
        self._answer(202 if sources else 200, {"queued": sources})

    def do_PUT(self) -> None:
        self._refuse(Refused(405, f"{self.command} not allowed"))

    do_DELETE = do_PATCH = do_PUT

    def _kind(self) -> str:
        kind = _ROUTES.get(self.path.split("?", 1)[0])
        if kind is None:
            raise Refused(404, f"no such endpoint {self.path.split('?', 1)[0]}")
        return kind

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            raise Refused(411, "a Content-Length is required")
        size = int(length)
        if size > self.server.endpoint.settings.max_body:
            raise Refused(413, f"body of {size} bytes is larger than max_body "
                               f"({self.server.endpoint.settings.max_body})")
        try:
            return self.rfile.read(size)
        except (TimeoutError, OSError) as exc:
            raise Refused(400, f"body not received: {exc}") from None

    def _refuse(self, refused: Refused) -> None:
        # The body may be unread (refused before it was reached): this connection cannot carry another request.
        self.close_connection = True
        log.warning("listen peer=%s %s %s refused %d: %s", self.client_address[0], self.command,
                    self.path.split("?", 1)[0], refused.status, refused.reason)
        extra = {"Retry-After": _RETRY_AFTER} if refused.status == 503 else {}
        self._answer(refused.status, {"error": refused.reason}, extra)

    def _answer(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = (json.dumps(data) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("listen peer=%s %s", self.client_address[0], format % args)


_ROUTES = {"/v1/sync": "sync", "/v1/events/registry": "registry", "/v1/events/harbor": "harbor"}


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise Refused(400, f"not JSON: {one_line(str(exc))}") from None


def _sources(kind: str, doc: object, endpoint: Endpoint) -> list[str]:
    try:
        if kind == "sync":
            return [events.sync_request(doc, endpoint.sources)]
        changes = events.registry_changes(doc) if kind == "registry" else events.harbor_changes(doc)
    except events.BadEvent as exc:
        raise Refused(400, str(exc)) from None
    except LookupError as exc:
        raise Refused(404, str(exc.args[0])) from None
    return events.sources_for(changes, endpoint.registries)
