"""
L{send_now} over real loopback TCP connections: a message leaves at once
when nothing is queued before it, and every byte arrives in order whatever
path it took.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_lambdagw.net.sending import send_now

from .loopback import real_reactor

HANG_GUARD = 30.0
"""Seconds before a test that never gets its bytes fails instead of hanging."""


class Collector(Protocol):
    """
    The server's side: keeps every byte, and fires once it has C{expected} of them.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.complete: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.complete.called:
            self.complete.callback(bytes(self.received))


class Sender(Protocol):
    """
    The client's side: fires C{connected} with itself once connected.
    """

    def __init__(self) -> None:
        self.connected_: Deferred[Sender] = Deferred()

    def connectionMade(self) -> None:
        self.connected_.callback(self)


class SendNowTests(TestCase):
    def setUp(self) -> None:
        self.reactor = real_reactor()
        self.collectors: list[Collector] = []

    async def connect(self, expected: int) -> tuple[Any, Collector]:
        """
        A connected client transport, and the server protocol that will collect C{expected} bytes.
        """
        collector = Collector(expected)
        self.collectors.append(collector)
        port = self.reactor.listenTCP(
            0, Factory.forProtocol(lambda: collector), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        sender = Sender()
        connector = self.reactor.connectTCP(
            "127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: sender)
        )
        self.addCleanup(connector.disconnect)
        await sender.connected_.addTimeout(HANG_GUARD, self.reactor)
        return sender.transport, collector

    async def received(self, collector: Collector) -> bytes:
        return await collector.complete.addTimeout(HANG_GUARD, self.reactor)

    async def test_sent_without_the_reactor(self) -> None:
        """
        With nothing queued, the message goes into the socket at once: the
        transport never asks the reactor to tell it when it can write.
        """
        transport, collector = await self.connect(len(b"one message"))
        send_now(transport, b"one message")
        self.assertNotIn(transport, self.reactor.getWriters())
        self.assertEqual(await self.received(collector), b"one message")

    async def test_a_write_waits_for_the_reactor(self) -> None:
        """
        The difference the first test sees: a plain write is queued for the reactor.
        """
        transport, collector = await self.connect(len(b"one message"))
        transport.write(b"one message")
        self.assertIn(transport, self.reactor.getWriters())
        self.assertEqual(await self.received(collector), b"one message")

    async def test_queued_bytes_leave_first(self) -> None:
        """
        Bytes already queued keep their place: the message is queued behind them.
        """
        transport, collector = await self.connect(len(b"first, second"))
        transport.write(b"first, ")
        send_now(transport, b"second")
        self.assertIn(transport, self.reactor.getWriters())
        self.assertEqual(await self.received(collector), b"first, second")

    async def test_what_the_socket_does_not_take_is_queued(self) -> None:
        """
        A message larger than the socket takes is sent in part and the rest
        queued; the peer gets every byte, in order.
        """
        message = bytes(range(256)) * (4 * 1024)  # 1 MiB
        transport, collector = await self.connect(len(message))
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        send_now(transport, message)
        self.assertIn(transport, self.reactor.getWriters())
        self.assertEqual(await self.received(collector), message)


class OtherTransportTests(SynchronousTestCase):
    def test_other_transports_are_written_to(self) -> None:
        """
        A transport that is not Twisted's TCP one gets an ordinary write.
        """
        transport = StringTransport()
        send_now(transport, b"message")
        self.assertEqual(transport.value(), b"message")
