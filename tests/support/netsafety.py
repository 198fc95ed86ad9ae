"""A safety net for tests of address refusal: any connect to a non-loopback address raises instead of connecting.

Tests that hand forbidden addresses (169.254.169.254, 10.0.0.1) to the code under test must never send traffic
there, even when that code is wrong. Python's audit hooks see every ``socket.connect`` before it happens; once
armed, the hook turns a connect to anything but loopback into an error, so a broken guard fails the test loudly
instead of reaching the network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import threading
from collections.abc import Iterator


class _Net:
    lock = threading.Lock()
    installed = False
    armed = 0


class OutsideConnect(RuntimeError):
    """The code under test tried to connect to a non-loopback address."""


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event != "socket.connect" or not _Net.armed:
        return
    address = args[1]
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return  # a Unix socket path, not a network address
    host = address[0].split("%", 1)[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise OutsideConnect(f"test tried to connect to {host}")


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While active (in any thread of this process), connecting to a non-loopback address raises OutsideConnect."""
    with _Net.lock:
        if not _Net.installed:
            sys.addaudithook(_hook)  # cannot be removed again; it does nothing while disarmed
            _Net.installed = True
        _Net.armed += 1
    try:
        yield
    finally:
        with _Net.lock:
            _Net.armed -= 1


__all__ = ["OutsideConnect", "loopback_only"]
