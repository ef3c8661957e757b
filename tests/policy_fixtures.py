"""
A request's passage for testing one policy step alone, on a real
twisted.web request.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from twisted_lambdagw.core.config import RouteConfig
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.core.proxies import Origin
from twisted_lambdagw.policies.chain import Passage, Principal

__all__ = ["Passage", "Principal", "passage", "principal", "route_from"]


def principal(user: str) -> Principal:
    """
    Who a request was authorized as, by basic auth.
    """
    return Principal(user, "basic")


def route_from(keys: str, gateway: str = "", auth: str = "") -> RouteConfig:
    """
    The route of a config whose one route section holds C{keys}.
    """
    text = (
        f"[gateway]\n{gateway}\n{auth}\n[route:/api]\nsingle = fn\naws_region = us-east-1\n{keys}\n"
    )
    return parse_config(text, "gw.ini", environ={}).routes[0]


def passage(
    route: RouteConfig,
    method: bytes = b"GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    remote: str = "192.0.2.10",
) -> Passage:
    channel = HTTPChannel()
    channel.makeConnection(StringTransport())
    request = Request(channel, parsePOSTFormSubmission=False)
    request.method = method
    request.uri = request.path = b"/api/x"
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
    exchange = Exchange("req-1", 0.0, remote, method.decode(), "/api/x", route=route.prefix)
    return Passage(
        request, "req-1", route, Origin(remote, "http", 8080), "/api/x", "/api/x", exchange
    )
