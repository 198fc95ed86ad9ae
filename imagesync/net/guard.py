"""Where image downloads may connect: public unicast addresses, plus ``download.allowed_networks`` (DESIGN §9).

A signed list is still data from outside the site: an ``hv:uri`` naming http://169.254.169.254/ or a service on
loopback would make imagesync fetch from inside the site's network (server-side request forgery). So every
connection of an image download resolves the host itself, checks every address, and connects to exactly the
addresses it checked: a second DNS answer cannot slip in between check and connect. Redirects need nothing
special, as each hop opens its connection through the same check. TLS still sends SNI and verifies the
certificate for the host *name*, because only the socket underneath is ours.

Through a proxy the proxy resolves and connects; the target is then checked as well as we can resolve it here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
# (host, port) -> getaddrinfo-style answers; the seam tests use to point names at addresses without DNS.
Resolver = Callable[[str, int], Sequence[AddrInfo]]
HINT = "add the network to download.allowed_networks if this is intended"


class AddressRefused(Exception):
    """A host resolves to an address downloads may not reach; ``str()`` names the host and the address."""

    hint = HINT

    def __init__(self, host: str, address: Address, kind: str) -> None:
        shown = str(address)
        where = f"{shown} is" if host.strip("[]") == shown else f"{host} resolves to {shown},"
        super().__init__(f"{where} a {kind} address")
        self.host = host
        self.address = address


def system_resolver(host: str, port: int) -> Sequence[AddrInfo]:
    """The system's answers for ``host``, for the address families urllib3 would use. Raises socket.gaierror."""
    return socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs as networks. Raises ValueError naming the first value that is not a network (or has host bits)."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=True))
        except ValueError as exc:
            problem = str(exc) if "host bits" in str(exc) else f"{value!r} is not an IP network in CIDR notation"
            raise ValueError(problem) from None
    return tuple(networks)


def refusal_kind(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why downloads may not reach ``address`` ("loopback", "private", ...), or None when they may."""
    # An IPv4-mapped IPv6 address reaches the IPv4 host: judge (and allow) it as that.
    ip = (address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else address
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    checks = ((ip.is_unspecified, "unspecified"), (ip.is_loopback, "loopback"), (ip.is_link_local, "link-local"),
              (ip.is_multicast, "multicast"), (ip.is_reserved, "reserved"), (ip.is_private, "private"),
              (not ip.is_global, "non-global"))
    return next((kind for bad, kind in checks if bad), None)


class AddressGuard:
    """Resolves, checks and connects for image downloads. Thread-safe (holds no mutable state)."""

    def __init__(self, allowed: Sequence[Network], resolve: Resolver = system_resolver) -> None:
        self.allowed = tuple(allowed)
        self._resolve = resolve

    def addresses(self, host: str, port: int) -> list[AddrInfo]:
        """Every answer for ``host``, all checked. Raises AddressRefused if any answer is forbidden (a name mixing
        public and internal answers is refused as a whole), socket.gaierror if the name does not resolve."""
        answers = list(self._resolve(host.strip("[]"), port))
        for info in answers:
            # A scoped IPv6 address ("fe80::1%eth0") carries its zone after '%'.
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            kind = refusal_kind(address, self.allowed)
            if kind is not None:
                raise AddressRefused(host, address, kind)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
        return answers

    def connect(self, host: str, port: int, timeout: float | None, *, source: tuple[str, int] | None = None,
                options: Sequence[tuple[int, int, int | bytes]] = ()) -> socket.socket:
        """A socket connected to the first reachable checked address of ``host``.

        Raises AddressRefused, socket.gaierror, or the OSError of the last address tried.
        """
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                for option in options:
                    sock.setsockopt(*option)
                sock.settimeout(timeout)
                if source:
                    sock.bind(source)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"no address to connect to for {host}")

    def check_url(self, url: str) -> None:
        """Check a URL's host without connecting: where a proxy connects for us, or to report (``check``). A name
        that does not resolve here is not refused (a proxy may resolve it). Raises AddressRefused.
        """
        parts = urlsplit(url)
        # A URL too broken to resolve (bad port, bad IDNA) fails on its own wherever it is used.
        with contextlib.suppress(socket.gaierror, UnicodeError, ValueError):
            if parts.hostname:
                self.addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def _open(conn: HTTPConnection, guard: AddressGuard) -> socket.socket:
    """urllib3's ``_new_conn`` with the guard's connect, raising what urllib3 raises so retries work the same."""
    timeout = conn.timeout if isinstance(conn.timeout, int | float) else socket.getdefaulttimeout()
    try:
        sock = guard.connect(conn._dns_host, conn.port or 80, timeout, source=conn.source_address,
                             options=conn.socket_options or ())
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})") from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
    sys.audit("http.client.connect", conn, conn.host, conn.port)
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, guard: AddressGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        return _open(self, self._guard)


class _GuardedHTTPSConnection(HTTPSConnection):
    # HTTPSConnection.connect() wraps this socket with server_hostname = the URL's host: SNI and the certificate
    # check stay on the name.
    def __init__(self, *args: Any, guard: AddressGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        return _open(self, self._guard)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedPoolManager(PoolManager):
    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard
        self.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None) -> HTTPConnectionPool:
        # urllib3 documents _new_pool as the place to customise pools; extra keywords reach every connection.
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["guard"] = self._guard
        return super()._new_pool(scheme, host, port, context)


class GuardedAdapter(HTTPAdapter):
    """An adapter whose every connection goes through ``guard``; combine with another adapter class by
    inheritance (this one first) to keep that adapter's TLS set-up."""

    def __init__(self, guard: AddressGuard, *args: Any) -> None:
        self.guard = guard  # before super().__init__, which builds the pool manager
        super().__init__(*args)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager = _GuardedPoolManager(self.guard, num_pools=connections, maxsize=maxsize, block=block,
                                               **pool_kwargs)

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: Mapping[str, str] | None = None, cert: Any = None) -> Any:
        if request.url and proxies and select_proxy(request.url, proxies):
            self.guard.check_url(request.url)
        return super().get_connection_with_tls_context(request, verify, proxies, cert)


__all__ = ["HINT", "AddrInfo", "AddressGuard", "AddressRefused", "GuardedAdapter", "Network", "Resolver",
           "parse_networks", "refusal_kind", "system_resolver"]
