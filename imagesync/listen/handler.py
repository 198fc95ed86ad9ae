"""One request to ``imagesync listen``: checked, then queued or refused, and answered.

Every request is judged in the same order, and whatever it fails at changes nothing:

1. path and method (404; 405 with ``Allow``); ``GET``/``HEAD /healthz`` answer at once, without a secret (they
   show no secret);
2. a bearer token, when that is the proof offered, before a byte of the body is read (401);
3. exactly one ``Content-Length`` of digits (411, 400; a chunked body is refused, 400) no larger than
   ``max_body`` (413, the body left unread);
4. an ``X-Imagesync-Signature``, on the raw body before it is parsed (401);
5. the body's shape (400) and, for ``/v1/sync``, a configured source (404);
6. room in the queue (503 with ``Retry-After``), then 202 with the sources queued (200 when none concern us).

Answers are small JSON objects; a refusal's ``error`` is one line, logged (escaped) with the peer's address, and
closes the connection: a body left unread cannot be followed by another request on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from socket import SHUT_RDWR
from typing import Any

from imagesync.config.listen import ListenSettings
from imagesync.config.registries import RegistrySettings
from imagesync.errors import ImagesyncError
from imagesync.listen import auth, events
from imagesync.listen.queue import Queue, QueueFull
from imagesync.util.textsafe import one_line

log = logging.getLogger("imagesync.listen.server")
REQUEST_DEADLINE = 30.0  # seconds one request may take from its first byte to the answer, however it trickles
_RETRY_AFTER = "30"
_ROUTES = {"/v1/sync": "sync", "/v1/events/registry": "registry", "/v1/events/harbor": "harbor"}
_LENGTH = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class Endpoint:
    """What the handlers need: the settings, the sources they may name, the queue, and whom to wake."""

    settings: ListenSettings
    sources: Sequence[str]  # every name /v1/sync accepts
    registries: Sequence[RegistrySettings]
    queue: Queue
    wake: Callable[[], None]  # tells the runner a source was queued
    health: Callable[[], dict[str, Any]]
    clock: Callable[[], float]


class Refused(Exception):
    """A request that changes nothing: the status and the one-line reason sent back."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint  # set on the subclass the server makes
    server_version = "imagesync-listen"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def handle_one_request(self) -> None:
        # The socket's timeout bounds each read; this bounds the whole request, so a client trickling a byte at
        # a time cannot hold its thread for long.
        cut = threading.Timer(REQUEST_DEADLINE, self._cut)
        cut.daemon = True
        cut.start()
        try:
            super().handle_one_request()
        finally:
            cut.cancel()

    def do_GET(self) -> None:
        self._health(head=False)

    def do_HEAD(self) -> None:
        self._health(head=True)

    def do_POST(self) -> None:
        try:
            sources, kind = self._accept()
        except Refused as refused:
            self._refuse(refused)
            return
        log.info("listen peer=%s event=%s queued=%s", self.client_address[0], kind, ",".join(sources) or "-")
        self._answer(202 if sources else 200, {"queued": sources})

    def do_PUT(self) -> None:
        self._refuse(self._wrong_method())

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    def _health(self, *, head: bool) -> None:
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a GET's body is never read: nothing may follow it on this connection
        if self._path() != "/healthz":
            self._refuse(self._wrong_method())
            return
        self._answer(200, self.endpoint.health(), head=head)

    def _accept(self) -> tuple[list[str], str]:
        kind = _ROUTES.get(self._path())
        if kind is None:
            raise self._wrong_method()
        headers = dict(self.headers.items())
        secret, signed = self.endpoint.settings.secret or "", auth.signed(headers)
        # A bearer token is judged before the body is read; a signature only with it. Each proof is checked once.
        if not signed and not auth.authentic(secret, headers, b""):
            raise Refused(401, "not authenticated: give X-Imagesync-Signature or Authorization")
        body = self._body()
        if signed and not auth.authentic(secret, headers, body):
            raise Refused(401, "not authenticated: give X-Imagesync-Signature or Authorization")
        sources = _sources(kind, _json(body), self.endpoint)
        if sources:
            try:
                self.endpoint.queue.add(sources, self.endpoint.clock())
            except QueueFull as exc:
                raise Refused(503, f"queue full: {exc}", {"Retry-After": _RETRY_AFTER}) from None
            except ImagesyncError as exc:
                raise Refused(503, exc.one_line(), {"Retry-After": _RETRY_AFTER}) from None
            self.endpoint.wake()
        return sources, kind

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") is not None:
            raise Refused(400, "a chunked body is not accepted: send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise Refused(411, "a Content-Length is required")
        if len(lengths) > 1 or not _LENGTH.fullmatch(lengths[0].strip()):
            raise Refused(400, "Content-Length must be given once, as a number")
        size, limit = int(lengths[0]), self.endpoint.settings.max_body
        if size > limit:
            raise Refused(413, f"body of {size} bytes is larger than max_body ({limit})")
        try:
            body = self.rfile.read(size)
        except OSError as exc:
            raise Refused(400, f"body not received: {one_line(str(exc))}") from None
        if len(body) != size:
            raise Refused(400, f"body ended after {len(body)} of {size} bytes")
        return body

    def _wrong_method(self) -> Refused:
        path = self._path()
        allowed = "GET, HEAD" if path == "/healthz" else "POST" if path in _ROUTES else None
        if allowed is None:
            return Refused(404, f"no such endpoint {path}")
        return Refused(405, f"{self.command} not allowed on {path}", {"Allow": allowed})

    def _path(self) -> str:
        return one_line(self.path.split("?", 1)[0])

    def _refuse(self, refused: Refused) -> None:
        self.close_connection = True
        log.warning("listen peer=%s %s %s refused %d: %s", self.client_address[0], one_line(self.command or ""),
                    self._path(), refused.status, refused.reason)
        self._answer(refused.status, {"error": refused.reason}, refused.headers, head=self.command == "HEAD")

    def _answer(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None, *,
                head: bool = False) -> None:
        body = (json.dumps(data) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _cut(self) -> None:
        with contextlib.suppress(OSError):  # already closed
            self.connection.shutdown(SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's own lines (errors, bad requests)
        log.debug("listen peer=%s %s", self.client_address[0], one_line(format % args))


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
        raise Refused(400, one_line(str(exc))) from None
    except LookupError as exc:
        raise Refused(404, one_line(str(exc.args[0]))) from None
    return events.sources_for(changes, endpoint.registries)
