"""What can go wrong with an HTTPS server, as a table shared by the list server and the image server scenarios.

Each entry breaks one path of one server for the rest of the test; where the failure is real (a removed file, a
rotated token, a certificate nobody trusts) it is made real rather than injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagesync.demo.server import Fault, ListServer
from tests.faults.scene import FaultPki

# More than the attempts a run makes: the fault outlasts any retry.
_TIMES = 3
HANG = 5.0  # seconds a stalled server stays silent; the configured timeout is 1 s


@dataclass(frozen=True)
class Breakage:
    """``apply(server, path, served_bytes, keys)``; ``cause`` is what the error line must say about it, ``misleads``
    what it must not (a wrong diagnosis sends the operator astray)."""

    apply: Callable[[ListServer, str, bytes, FaultPki], None]
    cause: str
    misleads: tuple[str, ...] = ()


def _repeat(fault: Fault) -> Callable[[ListServer, str, bytes, FaultPki], None]:
    def apply(server: ListServer, path: str, _data: bytes, _keys: FaultPki) -> None:
        for _ in range(_TIMES):
            server.inject(path, fault)
    return apply


def _short_length(server: ListServer, path: str, data: bytes, _keys: FaultPki) -> None:
    # The whole body, but a Content-Length of half of it: the client stops reading half-way.
    fault = Fault.status(200, headers={"Content-Length": str(len(data) // 2)}, body=data)
    for _ in range(_TIMES):
        server.inject(path, fault)


def _truncate(server: ListServer, path: str, data: bytes, _keys: FaultPki) -> None:
    for _ in range(_TIMES):
        server.inject(path, Fault.truncate(len(data) // 2))


def _rotated_token(server: ListServer, path: str, _data: bytes, _keys: FaultPki) -> None:
    server.require_token(path, "a-token-nobody-configured")


def _removed(server: ListServer, path: str, _data: bytes, _keys: FaultPki) -> None:
    server.remove(path)


def _untrusted(server: ListServer, _path: str, _data: bytes, keys: FaultPki) -> None:
    server.present(keys.untrusted.cert_pem, keys.untrusted.key_pem)


def _wrong_host(server: ListServer, _path: str, _data: bytes, keys: FaultPki) -> None:
    server.present(keys.wrong_host.cert_pem, keys.wrong_host.key_pem)


HTTP_FAULTS: dict[str, Breakage] = {
    "http-500": Breakage(_repeat(Fault.status(500)), "HTTP 500"),
    "http-503": Breakage(_repeat(Fault.status(503, headers={"Retry-After": "1"})), "HTTP 503"),
    "connection-reset": Breakage(_repeat(Fault.reset()), "reset"),
    "stall-silent": Breakage(_repeat(Fault.hang(HANG)), "1s"),
    "stall-after-headers": Breakage(_repeat(Fault.stall(HANG)), "stalled"),
    "truncated": Breakage(_truncate, "truncated"),
    "short-content-length": Breakage(_short_length, "truncated"),
    "http-401": Breakage(_rotated_token, "HTTP 401"),
    "http-404": Breakage(_removed, "not found"),
    "tls-untrusted": Breakage(_untrusted, "not trusted"),
    # The CA is trusted; the certificate names another host: the CA directory is not what to check.
    "tls-wrong-host": Breakage(_wrong_host, "for another host", misleads=("not trusted", "CA")),
}
