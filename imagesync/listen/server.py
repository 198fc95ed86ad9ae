"""The listening socket of ``imagesync listen``: at most ``MAX_CONNECTIONS`` at once, each in its own thread,
with TLS (when configured) negotiated in that thread, so a client that never finishes its handshake holds no one
else up. What a request may do is :mod:`imagesync.listen.handler`'s.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from imagesync.config.listen import ListenSettings
from imagesync.listen.handler import Endpoint, Handler
from imagesync.util.textsafe import one_line

log = logging.getLogger(__name__)
READ_TIMEOUT = 10.0  # seconds any one read may wait (also how long an idle kept-alive connection stays)
MAX_CONNECTIONS = 32  # a registry sends one notification at a time; this only bounds threads and sockets


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: Endpoint, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in endpoint.settings.address:
            self.address_family = socket.AF_INET6
        handler = type("BoundHandler", (Handler,), {"endpoint": endpoint})
        super().__init__((endpoint.settings.address, endpoint.settings.port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("listen peer=%s refused: %d connections open already", client_address[0], MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(READ_TIMEOUT)
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.warning("listen peer=%s TLS handshake failed: %s", client_address[0], one_line(str(exc)))
                return
        super().finish_request(request, client_address)


    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr; a client that went away or was cut off at its deadline is one
        # debug line, anything else one warning line (the journal is no place for a peer's broken connection).
        kind, exc = sys.exc_info()[:2]
        level = logging.DEBUG if kind is not None and issubclass(kind, OSError) else logging.WARNING
        log.log(level, "listen peer=%s request ended: %s: %s", client_address[0], kind.__name__ if kind else "?",
                one_line(str(exc)))


def tls_context(settings: ListenSettings) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP. Raises ssl.SSLError / OSError for unusable files."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
