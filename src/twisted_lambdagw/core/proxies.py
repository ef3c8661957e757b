"""
Who a request is really from, when the gateway runs behind proxies.

A load balancer in front of the gateway connects on the client's behalf and
says who the client was in ``X-Forwarded-For`` (and how it connected in
``X-Forwarded-Proto`` / ``X-Forwarded-Port``).  Any client can send those
headers too, so they are believed only from peers listed in
``[gateway] trusted_proxies``.  Each proxy appends the address it saw, so
the list is read from the right: trusted proxies are skipped, and the first
address that is not one of them is the client.  Everything to its left was
written by that client and is ignored.  A hop that is not an IP address ends
the walk: nothing to its left can be attributed to anyone.

With no trusted proxies (the default), the connection's peer is the client
and forwarded headers from clients are ignored and replaced.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from .config import TrustedProxy
from .records import record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@record
class Origin:
    """
    The client as the gateway believes it: address, scheme and port it used.
    """

    remote: str
    scheme: str
    port: int


def parse_address(text: str) -> IPAddress | None:
    """
    An IP address from a forwarded hop (IPv6 may be in brackets), or None.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _comparable(address: IPAddress) -> IPAddress:
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _last_token(values: Sequence[str]) -> str | None:
    tokens = [t.strip() for value in values for t in value.split(",")]
    return tokens[-1] if tokens else None


class TrustedProxies:
    """
    The ``trusted_proxies`` setting, and the client it implies for a request.
    """

    def __init__(self, entries: Sequence[TrustedProxy] = ()) -> None:
        self.unix = "unix" in entries
        self.networks = [e for e in entries if not isinstance(e, str)]

    def __bool__(self) -> bool:
        return self.unix or bool(self.networks)

    def trusts(self, address: IPAddress) -> bool:
        address = _comparable(address)
        return any(address in network for network in self.networks)

    def trusts_peer(self, peer: str | None) -> bool:
        """
        Whether the connection's peer is a trusted proxy; None is a Unix socket.
        """
        if peer is None:
            return self.unix
        address = parse_address(peer)
        return address is not None and self.trusts(address)

    def origin(
        self,
        peer: str | None,
        scheme: str,
        port: int,
        forwarded_for: Sequence[str] = (),
        forwarded_proto: Sequence[str] = (),
        forwarded_port: Sequence[str] = (),
    ) -> Origin:
        """
        The client behind this connection, given its forwarded headers' values.
        """
        remote = peer or ""
        if not self.trusts_peer(peer):
            return Origin(remote, scheme, port)
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break
            remote = str(address)
            if not self.trusts(address):
                break
        proto = (_last_token(forwarded_proto) or "").lower()
        if proto in ("http", "https"):
            scheme = proto
        given_port = _last_token(forwarded_port) or ""
        if given_port.isdigit() and 0 < int(given_port) < 65536:
            port = int(given_port)
        return Origin(remote, scheme, port)
