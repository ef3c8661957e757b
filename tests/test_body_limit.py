"""
The request body cap, on a real loopback Site: a body over max_body_size is
refused with 413 and nothing is invoked, whether its size is announced by
Content-Length or only discovered while a chunked body arrives.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from twisted_lambdagw.formats import get_format
from twisted_lambdagw.request import request_factory
from twisted_lambdagw.resource import Binding, GatewayResource
from twisted_lambdagw.testing import InProcessInvoker

from .gateway_fixtures import config_from
from .loopback import real_reactor


class RawClient(Protocol):
    """
    Sends fixed bytes and collects whatever comes back until the connection closes.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(self.received)


class BodyLimitTests(TestCase):
    """
    Oversized bodies get 413 before any invocation.
    """

    def setUp(self) -> None:
        self.reactor = real_reactor()
        [route] = config_from("[route:/lambda/]\naws_region = us-east-1\n").routes
        self.invoker = InProcessInvoker({"fn": lambda event, context: {"ok": True}})
        binding = Binding(route, self.invoker, get_format(route.format))
        site = Site(GatewayResource([binding], self.reactor))
        site.requestFactory = request_factory(100)
        self.port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    async def exchange(self, data: bytes) -> bytes:
        client = RawClient(data)
        factory = ClientFactory.forProtocol(lambda: client)
        self.reactor.connectTCP("127.0.0.1", self.port.getHost().port, factory)
        return await client.done

    async def test_small_body_is_invoked(self) -> None:
        """
        A body under the cap goes through.
        """
        answer = await self.exchange(
            b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nhello"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertEqual(len(self.invoker.calls), 1)

    async def test_content_length_over_cap(self) -> None:
        """
        An announced length over the cap is a 413 JSON error and invokes nothing.
        """
        answer = await self.exchange(
            b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + b"x" * 101
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        body = answer.partition(b"\r\n\r\n")[2]
        self.assertEqual(json.loads(body)["error"], "request body too large")
        self.assertEqual(self.invoker.calls, [])

    async def test_chunked_body_over_cap(self) -> None:
        """
        A chunked body that grows past the cap is a 413 and invokes nothing.
        """
        chunk = b"40\r\n" + b"y" * 64 + b"\r\n"
        answer = await self.exchange(
            b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 3
            + b"0\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertEqual(self.invoker.calls, [])
