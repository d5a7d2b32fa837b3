"""The client address the failed-login limits count under (domain/auth/client_address.py)."""

from __future__ import annotations

import pytest

from metricgate.domain.auth.client_address import (
    UNKNOWN,
    client_address,
    parse_address,
    parse_networks,
)

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8", "192.168.1.7"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:8080", "1.2.3.4"),
        ("::1", "::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),  # IPv4 on a dual-stack socket: the same client
    ],
)
def test_parse_address(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", [None, "", "unknown", "_hidden", "1.2.3", "[::1", "a:b:c"])
def test_parse_address_refuses_non_addresses(text: str | None) -> None:
    assert parse_address(text) is None


def test_parse_networks() -> None:
    assert [str(n) for n in PROXIES] == ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]
    assert [str(n) for n in parse_networks(["10.1.2.3/8"])] == ["10.0.0.0/8"]  # host bits set
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks(["10.0.0.0/33"])
    with pytest.raises(ValueError, match="'proxy'"):
        parse_networks(["10.0.0.0/8", "proxy"])


def test_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_address("203.0.113.9", ["1.1.1.1"], PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", ["1.1.1.1"], ()) == "203.0.113.9"
    # No trusted proxies configured: even a private peer's header is ignored.
    assert client_address("10.0.0.2", ["1.1.1.1"], ()) == "10.0.0.2"


def test_trusted_peer_the_nearest_untrusted_hop() -> None:
    assert client_address("10.0.0.2", ["198.51.100.4"], PROXIES) == "198.51.100.4"
    # Our proxies appended after the client: they are skipped.
    assert client_address("10.0.0.2", ["198.51.100.4, 10.0.0.9"], PROXIES) == "198.51.100.4"
    # The client wrote its own header first: what it wrote is left of the real address.
    forwarded = ["6.6.6.6, 7.7.7.7, 198.51.100.4, 192.168.1.7"]
    assert client_address("10.0.0.2", forwarded, PROXIES) == "198.51.100.4"
    # Several headers are one list, in order.
    assert client_address("10.0.0.2", ["6.6.6.6", "198.51.100.4"], PROXIES) == "198.51.100.4"
    assert client_address("fd00::2", ["2001:db8::7"], PROXIES) == "2001:db8::7"
    assert client_address("[fd00::2]:5000", ["[2001:db8::7]:1234"], PROXIES) == "2001:db8::7"


def test_trusted_peer_without_a_usable_header() -> None:
    assert client_address("10.0.0.2", [], PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", [""], PROXIES) == "10.0.0.2"
    # A garbage hop ends the walk at the last trusted address before it.
    assert client_address("10.0.0.2", ["1.2.3.4, garbage, 10.0.0.9"], PROXIES) == "10.0.0.9"
    assert client_address("10.0.0.2", ["1.2.3.4, unknown"], PROXIES) == "10.0.0.2"
    # Every hop one of ours (a health check from inside): the farthest of them.
    assert client_address("10.0.0.2", ["10.0.0.3, 10.0.0.9"], PROXIES) == "10.0.0.3"


def test_peer_that_is_not_an_address() -> None:
    assert client_address(None, ["1.2.3.4"], PROXIES) == UNKNOWN
    assert client_address("", [], PROXIES) == UNKNOWN
