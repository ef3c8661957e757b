"""
The request body cap, on a real loopback Site: a body over max_body_size is
refused with 413 and nothing is invoked, whether its size is announced by
Content-Length or only discovered while a chunked body arrives.  The answer
comes without waiting for the rest of the body, and the connection is closed.
"""

from __future__ import annotations

import json

from twisted.internet.protocol import ClientFactory
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.server.request import request_factory
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import InProcessInvoker

from .gateway_fixtures import config_from
from .loopback import RawClient, real_reactor

HANG_GUARD = 30.0
"""Seconds before a test that gets no answer fails instead of hanging."""


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
        """
        Send C{data}, keep the connection open, and return all the server
        sent once the server closed it (the client never closes it itself).
        """
        client = RawClient(data)
        factory = ClientFactory.forProtocol(lambda: client)
        self.reactor.connectTCP("127.0.0.1", self.port.getHost().port, factory)
        # Only a guard against a hang: a server that waited for the rest of
        # the body would never answer.
        return await client.done.addTimeout(HANG_GUARD, self.reactor)

    def assert_refused(self, answer: bytes) -> None:
        """
        C{answer} is one 413 with a JSON error naming its request id, and Connection: close.
        """
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 413 Request Entity Too Large", answer)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines[1:])
        }
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(headers[b"content-length"], str(len(body)).encode())
        error = json.loads(body)
        self.assertEqual(error["error"], "request body too large")
        self.assertEqual(error["request_id"], headers[b"x-request-id"].decode())
        self.assertNotIn(b"100 Continue", answer)
        self.assertEqual(self.invoker.calls, [])

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

    async def test_announced_length_is_answered_before_the_body(self) -> None:
        """
        Content-Length 10 MB with only a few bytes sent: the 413 arrives and the server closes.
        """
        answer = await self.exchange(
            b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\nabc"
        )
        self.assert_refused(answer)

    async def test_expect_continue_is_not_answered_with_continue(self) -> None:
        """
        A client that waits for 100 Continue gets the 413 instead, before sending any body.
        """
        answer = await self.exchange(
            b"PUT /lambda/fn HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        self.assert_refused(answer)

    async def test_chunked_body_is_answered_when_the_count_passes_the_cap(self) -> None:
        """
        A chunked body still arriving is answered as soon as its count passes the cap.
        """
        chunk = b"40\r\n" + b"y" * 64 + b"\r\n"
        answer = await self.exchange(
            b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2
        )
        self.assert_refused(answer)

    async def test_chunked_body_complete_over_cap(self) -> None:
        """
        A complete chunked body over the cap in one packet is one 413, then the close.
        """
        chunk = b"40\r\n" + b"y" * 64 + b"\r\n"
        answer = await self.exchange(
            b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 3
            + b"0\r\n\r\n"
            + b"GET /lambda/fn HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assert_refused(answer)
        self.assertEqual(answer.count(b"HTTP/1.1 "), 1)

    async def test_route_is_checked_first(self) -> None:
        """
        An oversized body for a path with no route is a 404, and the connection still closes.
        """
        answer = await self.exchange(
            b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer)
        self.assertIn(b"\r\nConnection: close\r\n", answer)

    async def test_keep_alive_under_the_cap(self) -> None:
        """
        Bodies under the cap leave the connection open for the next request.
        """
        request = b"POST /lambda/fn HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        answer = await self.exchange(
            request + request.replace(b"Host: x", b"Host: x\r\nConnection: close")
        )
        self.assertEqual(answer.count(b"HTTP/1.1 200 "), 2, answer)
        self.assertEqual(len(self.invoker.calls), 2)
