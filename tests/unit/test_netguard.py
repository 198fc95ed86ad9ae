"""Which addresses image downloads may reach: a table of addresses, allowed networks and resolver answers."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from imagesync.net import guard as netguard
from imagesync.net.guard import AddressGuard, AddressRefused, parse_networks


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.1.2.3", "multicast"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.1.2.3", "private"),
    ("100.64.0.1", "non-global"), ("255.255.255.255", "reserved"), ("240.0.0.1", "reserved"),
    ("64:ff9b::a9fe:a9fe", "reserved"), ("192.0.2.7", "private"),
    ("8.8.8.8", None), ("193.0.14.129", None), ("2001:4860:4860::8888", None),
])
def test_refusal_kind(address: str, kind: str | None) -> None:
    assert netguard.refusal_kind(ipaddress.ip_address(address), ()) == kind


@pytest.mark.parametrize(("address", "allowed", "kind"), [
    ("127.0.0.1", ["127.0.0.0/8"], None),
    ("::ffff:127.0.0.1", ["127.0.0.0/8"], None),
    ("127.0.0.2", ["127.0.0.1/32"], "loopback"),
    ("10.20.30.40", ["10.20.0.0/16", "192.168.0.0/24"], None),
    ("10.21.0.1", ["10.20.0.0/16"], "private"),
    ("fd12:3456::1", ["fd12:3456::/32"], None),
    ("169.254.169.254", ["10.0.0.0/8"], "link-local"),
])
def test_allowed_networks_let_addresses_through(address: str, allowed: list[str], kind: str | None) -> None:
    assert netguard.refusal_kind(ipaddress.ip_address(address), parse_networks(allowed)) == kind


@pytest.mark.parametrize(("value", "problem"), [
    ("10.0.0.1/8", "has host bits set"), ("localhost", "not an IP network"), ("10.0.0.0/33", "not an IP network"),
])
def test_parse_networks_rejects_bad_cidrs(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        parse_networks(["127.0.0.0/8", value])
    assert value in str(info.value)


def answers(*addresses: str) -> netguard.Resolver:
    """A resolver seam: every name resolves to ``addresses`` (no DNS query is ever sent)."""
    def resolve(host: str, port: int) -> list[netguard.AddrInfo]:
        result: list[netguard.AddrInfo] = []
        for address in addresses:
            ip = ipaddress.ip_address(address)
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
                (address, port, 0, 0) if ip.version == 6 else (address, port))
            result.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return result
    return resolve


def test_every_answer_is_checked_and_one_bad_answer_refuses_the_host() -> None:
    guard = AddressGuard((), answers("8.8.8.8", "169.254.169.254"))
    with pytest.raises(AddressRefused) as info:
        guard.addresses("images.example.test", 443)
    assert str(info.value) == "images.example.test resolves to 169.254.169.254, a link-local address"
    assert info.value.hint == "add the network to download.allowed_networks if this is intended"


def test_an_address_literal_is_named_once() -> None:
    guard = AddressGuard((), answers("10.0.0.1"))
    with pytest.raises(AddressRefused, match=r"^10\.0\.0\.1 is a private address$"):
        guard.addresses("10.0.0.1", 80)


def test_allowed_answers_are_returned_as_resolved() -> None:
    guard = AddressGuard(parse_networks(["127.0.0.0/8"]), answers("127.0.0.1", "8.8.8.8"))
    assert [info[4][0] for info in guard.addresses("images.example.test", 80)] == ["127.0.0.1", "8.8.8.8"]


def test_link_local_ipv6_with_scope_is_refused() -> None:
    def resolve(host: str, port: int) -> list[netguard.AddrInfo]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("fe80::1%lo", port, 0, 1))]
    with pytest.raises(AddressRefused, match="fe80::1, a link-local address"):
        AddressGuard((), resolve).addresses("router.example.test", 80)


def test_unresolvable_host_is_a_resolution_error_not_a_refusal() -> None:
    def resolve(host: str, port: int) -> list[netguard.AddrInfo]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(socket.gaierror):
        AddressGuard((), resolve).addresses("nowhere.invalid", 80)
