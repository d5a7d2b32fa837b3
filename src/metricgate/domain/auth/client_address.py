"""Which address a request comes from, for the failed-login limits (docs/design-auth.md B7).

The peer of the TCP connection, unless that peer is one of the trusted proxies: then the
right-most address of ``X-Forwarded-For`` that is not itself a trusted proxy. Each proxy
appends the address it received the request from, so the entries right of the first untrusted
one were written by our own proxies and the ones left of it by whoever the client is (who can
write anything there). Taking the left-most entry instead would let any client pick the
address it is counted under by sending its own header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"  # a peer aiohttp could not name (a Unix socket): all such requests share it


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``-style networks (a bare address is a /32 or /128); ValueError names the
    first one that is not."""
    networks = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {text!r}") from None
    return tuple(networks)


def parse_address(text: str | None) -> Address | None:
    """An address as a peer or a forwarding header writes it: ``1.2.3.4``, ``::1``, ``[::1]``,
    ``[::1]:8080`` or ``1.2.3.4:8080`` (ports are dropped); None when it is none of these."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # IPv4 with a port; an IPv6 address has at least two colons
        value = value.partition(":")[0]
    if "%" in value:  # an IPv6 zone index names an interface of the sender, not the client
        value = value.partition("%")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # one client, one key, whichever socket family it came in on
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def from_trusted_proxy(peer: str | None, trusted_proxies: Sequence[Network]) -> bool:
    """Whether the connection's peer is one of the trusted proxies (whose headers count)."""
    address = parse_address(peer)
    return address is not None and _trusted(address, trusted_proxies)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> str:
    """The address to count a request's failed logins under.

    ``forwarded_for``: every ``X-Forwarded-For`` header of the request, in order (a proxy may
    add a header instead of extending the last one). The header is read only when the peer is
    a trusted proxy; an entry that is not an address there ends the walk (what lies left of it
    cannot be trusted to be an address either), and the last trusted hop is the answer."""
    address = parse_address(peer)
    if address is None:
        return peer.strip() if peer and peer.strip() else UNKNOWN
    if not trusted_proxies or not _trusted(address, trusted_proxies):
        return str(address)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        forwarded = parse_address(hop)
        if forwarded is None:
            break
        address = forwarded
        if not _trusted(forwarded, trusted_proxies):
            break
    return str(address)
