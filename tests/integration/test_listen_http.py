"""The listen endpoint's HTTP framing and bounds, on a real socket: the server and handler in this process (so the
deadlines can be shortened), a real queue file, raw bytes from the client side (no HTTP library would send the
malformed requests these tests need)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from imagesync.config.listen import ListenSettings
from imagesync.listen import handler as handler_module
from imagesync.listen import server as server_module
from imagesync.listen.handler import Endpoint
from imagesync.listen.queue import Queue
from imagesync.listen.server import Server, tls_context
from imagesync.notify.webhooks import signature
from tests.support.tls import client_context, make_server_pki

SECRET = "0123456789abcdef0123456789abcdef"
SYNC = b'{"source": "demo"}'
SETTINGS = ListenSettings(port=0, secret=SECRET, max_body=1024)


@contextmanager
def serving(tmp_path: Path, settings: ListenSettings = SETTINGS) -> Iterator[tuple[Server, Queue]]:
    queue = Queue(tmp_path, limit=10)
    endpoint = Endpoint(settings=settings, sources=["demo"], registries=[], queue=queue, wake=lambda: None,
                        health=lambda: {"status": "ok"}, clock=time.time)
    server = Server(endpoint, tls_context(settings))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, queue
    finally:
        server.shutdown()
        server.server_close()
        queue.close()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
    return sock


def exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes the connection."""
    sock.sendall(data)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def post(body: bytes, *headers: str) -> bytes:
    lines = ["POST /v1/sync HTTP/1.1", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def signed(body: bytes) -> str:
    return f"X-Imagesync-Signature: {signature(SECRET, body)}"


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_methods_and_paths(tmp_path: Path) -> None:
    with serving(tmp_path) as (server, _):
        head = exchange(connect(server), b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(head) == [200] and head.endswith(b"\r\n\r\n")  # no body
        wrong = exchange(connect(server), b"GET /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(wrong) == [405] and b"Allow: POST\r\n" in wrong
        wrong = exchange(connect(server), post(b"", "Content-Length: 0").replace(b"/v1/sync", b"/healthz"))
        assert statuses(wrong) == [405] and b"Allow: GET, HEAD\r\n" in wrong
        assert statuses(exchange(connect(server), b"DELETE /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")) == [404]


def test_a_get_with_a_body_smuggles_no_second_request(tmp_path: Path) -> None:
    smuggled = post(SYNC, signed(SYNC), f"Content-Length: {len(SYNC)}")
    request = f"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n".encode() + smuggled
    with serving(tmp_path) as (server, queue):
        assert statuses(exchange(connect(server), request)) == [200]
        assert queue.waiting() == []


@pytest.mark.parametrize(("headers", "status"), [
    (("Content-Length: 18", "Content-Length: 5"), 400),
    (("Content-Length: \u00b2",), 400),
    (("Content-Length: " + "9" * 5000,), 400),
    (("Transfer-Encoding: chunked",), 400),
    ((), 411),
])
def test_bodies_must_have_one_plain_content_length(tmp_path: Path, headers: tuple[str, ...], status: int) -> None:
    with serving(tmp_path) as (server, queue):
        raw = post(SYNC, signed(SYNC), *headers).replace("\u00b2".encode(), b"\xc2\xb2")
        assert statuses(exchange(connect(server), raw)) == [status]
        assert queue.waiting() == []


def test_a_wrong_bearer_token_is_refused_before_the_body_is_read(tmp_path: Path) -> None:
    with serving(tmp_path) as (server, _):
        sock = connect(server)
        # A body of 1000 bytes announced and never sent: the answer comes anyway.
        answer = exchange(sock, post(b"", "Authorization: Bearer guessed", "Content-Length: 1000"))
        assert statuses(answer) == [401]


def test_kept_alive_connections_carry_several_requests(tmp_path: Path) -> None:
    with serving(tmp_path) as (server, queue):
        one = post(SYNC, signed(SYNC), f"Content-Length: {len(SYNC)}")
        last = post(SYNC, signed(SYNC), f"Content-Length: {len(SYNC)}", "Connection: close")
        assert statuses(exchange(connect(server), one + last)) == [202, 202]
        assert [(w.source, w.events) for w in queue.waiting()] == [("demo", 2)]


def test_a_trickling_client_is_cut_off_at_the_request_deadline(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: each read had a timeout, the request none; a byte every half second held the thread forever."""
    monkeypatch.setattr(handler_module, "REQUEST_DEADLINE", 1.0)
    with serving(tmp_path) as (server, _):
        sock = connect(server)
        sent = 0
        with pytest.raises(OSError):  # the server shuts the connection: a send fails, or the read below ends
            for byte in post(SYNC, signed(SYNC), f"Content-Length: {len(SYNC)}"):
                sock.send(bytes([byte]))
                sent += 1
                time.sleep(0.3)
            raise AssertionError("the whole request went through")
        assert sent < 40


def test_connections_beyond_the_cap_are_closed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 2)
    with serving(tmp_path) as (server, _):
        held = [connect(server) for _ in range(2)]
        time.sleep(0.2)  # both accepted and waiting for a request line
        assert connect(server).recv(100) == b""
        for sock in held:
            sock.close()


def test_tls(tmp_path: Path) -> None:
    pki = make_server_pki("imagesync listen test CA")
    (tmp_path / "cert.pem").write_bytes(pki.cert_pem)
    (tmp_path / "key.pem").write_bytes(pki.key_pem)
    settings = replace(SETTINGS, tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem")
    with serving(tmp_path, settings) as (server, _):
        with client_context(pki).wrap_socket(connect(server), server_hostname="127.0.0.1") as sock:
            answer = exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(answer) == [200]
        plain = connect(server)
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            refused = plain.recv(100)
        except ConnectionResetError:
            refused = b""
        assert b"HTTP/1.1 200" not in refused
