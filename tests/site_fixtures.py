"""
Raw HTTP/1.1 connections to a real L{GatewaySite}, on a memory reactor with
a clock: bytes in, bytes out, time advanced by hand.  For what StubTreq
cannot express: malformed framing, byte-at-a-time clients, timeouts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_lambdagw.core.config import Config
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.policies import Authenticator, InFlight, PolicyServices, build_chain
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.server.site import GatewaySite
from twisted_lambdagw.testing import Handler, InProcessInvoker

from .gateway_fixtures import config_from

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def ok(event: Any, context: Any) -> Any:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "ok"}


class SiteUnderTest:
    """
    A GatewaySite over a gateway resource whose routes run ``functions`` in process.

    By default the config has one ``/lambda/`` route; ``authenticator`` guards
    the routes that say ``auth = basic``.
    """

    def __init__(
        self,
        functions: Mapping[str, Handler] | None = None,
        *,
        config: Config | None = None,
        authenticator: Authenticator | None = None,
        header_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        reactor: MemoryReactorClock | None = None,
    ) -> None:
        self.reactor = reactor if reactor is not None else MemoryReactorClock()
        if config is None:
            config = config_from("[route:/lambda/]\naws_region = us-east-1\n")
        self.invoker = InProcessInvoker(functions if functions is not None else {"fn": ok})
        services = PolicyServices(self.reactor, in_flight=InFlight(), authenticator=authenticator)
        bindings = [
            Binding(
                route,
                self.invoker,
                get_format(route.format),
                build_chain(route, config, services),
            )
            for route in config.routes
        ]
        self.resource = GatewayResource(bindings, self.reactor, in_flight=services.in_flight)
        self.site = GatewaySite(
            self.resource,
            reactor=self.reactor,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
        )
        self.site.doStart()

    def connect(self) -> Connection:
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        assert protocol is not None
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 50000),
        )
        protocol.makeConnection(transport)
        return Connection(protocol, transport)

    def stop(self) -> None:
        self.site.doStop()


class Connection:
    """
    One client connection: what was sent, and what the gateway answered.
    """

    def __init__(self, protocol: Any, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    @property
    def received(self) -> bytes:
        value: bytes = self.transport.value()
        return value

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)

    def statuses(self) -> list[int]:
        """
        The status of each response written so far, in order.
        """
        return [int(status) for status in STATUS_LINE.findall(self.received)]

    def last_json(self) -> Any:
        """
        The body of the last response, as JSON.
        """
        return json.loads(self.received.rpartition(b"\r\n\r\n")[2])
