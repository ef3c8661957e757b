"""
The opt-in reactor: Twisted's epoll reactor with its own poll loop, run
here on real loopback sockets (its own instance, never installed: the tests'
reactor stays as it is), and installed through its twistd plugin in a child
process.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.daemon.reactor import GatewayReactor
from twisted_lambdagw.daemon.workers import _reactor_module

from .process_fixtures import child_environment

TIMEOUT = 10.0


class Tracked(Protocol):
    """
    A server protocol its L{Loop} knows about from connection to loss.
    """

    loop: Loop
    lost = False

    def connectionMade(self) -> None:
        self.loop.connected.append(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True


class Echo(Tracked):
    """
    Sends back what it gets; ``big`` gets 4 MB, more than a socket takes at once.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"x" * 4_000_000 if data == b"big" else data)


class Loop:
    """
    A L{GatewayReactor} of its own, listening on loopback, iterated by hand.
    """

    def __init__(self, test: SynchronousTestCase, protocol: type[Tracked]) -> None:
        self.reactor = GatewayReactor()
        self.connected: list[Tracked] = []
        loop = self

        class Made(protocol):  # type: ignore[valid-type,misc]
            pass

        Made.loop = loop
        self.port = self.reactor.listenTCP(0, Factory.forProtocol(Made), interface="127.0.0.1")
        test.addCleanup(self.close)

    def connect(self) -> socket.socket:
        """
        A client connection, once the loop has accepted it.
        """
        client = socket.create_connection(("127.0.0.1", self.port.getHost().port), TIMEOUT)
        count = len(self.connected) + 1
        self.run_until(lambda: len(self.connected) == count)
        return client

    def run_until(self, done: Any) -> None:
        deadline = self.reactor.seconds() + TIMEOUT
        while not done():
            assert self.reactor.seconds() < deadline, "timed out"
            self.reactor.iterate(0.05)

    def close(self) -> None:
        self.port.stopListening()
        self.reactor.removeAll()
        self.reactor.iterate(0)
        self.reactor._poller.close()


def read(client: socket.socket, count: int) -> bytes:
    got = b""
    while len(got) < count:
        piece = client.recv(count - len(got))
        if not piece:
            break
        got += piece
    return got


class GatewayReactorTests(SynchronousTestCase):
    """
    Reads and writes are handled as Twisted's epoll reactor handles them.
    """

    def test_reads_and_queued_writes(self) -> None:
        """
        Bytes in are read; bytes out that the socket does not take at once
        are queued and sent as it drains (the writable path).
        """
        loop = Loop(self, Echo)
        client = loop.connect()
        client.sendall(b"hello")
        self.assertEqual(read_after(loop, client, 5), b"hello")
        client.sendall(b"big")
        received = 0
        client.setblocking(False)
        while received < 4_000_000:
            loop.reactor.iterate(0.01)
            with contextlib.suppress(BlockingIOError):
                received += len(client.recv(1 << 20))
        self.assertEqual(received, 4_000_000)
        loop.run_until(lambda: not loop.reactor.getWriters())
        client.close()

    def test_handler_error_drops_the_connection(self) -> None:
        """
        A protocol that raises has its connection dropped and the error
        logged; the loop and the other connections go on.
        """

        class Broken(Echo):
            def dataReceived(self, data: bytes) -> None:
                if data == b"boom":
                    raise ZeroDivisionError("raised by the test")
                super().dataReceived(data)

        loop = Loop(self, Broken)
        broken, fine = loop.connect(), loop.connect()
        broken.sendall(b"boom")
        loop.run_until(lambda: loop.connected[0].lost)
        self.assertEqual(read(broken, 1), b"")
        self.assertFalse(loop.connected[1].lost)
        fine.sendall(b"still here")
        self.assertEqual(read_after(loop, fine, 10), b"still here")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        broken.close()
        fine.close()

    def test_socket_closed_earlier_in_the_same_poll(self) -> None:
        """
        When handling one ready socket closes another that the same poll
        reported, the other is skipped.
        """
        handled: list[Tracked] = []

        class Closer(Tracked):
            def dataReceived(self, data: bytes) -> None:
                handled.append(self)
                for other in self.loop.connected:
                    if other is not self and other.transport is not None:
                        other.transport.abortConnection()  # type: ignore[attr-defined]

        loop = Loop(self, Closer)
        first, second = loop.connect(), loop.connect()
        first.sendall(b"a")
        second.sendall(b"b")
        # Both are ready before the poll: one epoll_wait reports both.
        loop.reactor.iterate(1.0)
        self.assertEqual(len(handled), 1)
        [other] = [p for p in loop.connected if p is not handled[0]]
        loop.run_until(lambda: other.lost)
        self.assertFalse(handled[0].lost)
        first.close()
        second.close()

    def test_workers_run_it_too(self) -> None:
        """
        Workers install the reactor kind their parent runs: this one, by its module.
        """
        reactor = GatewayReactor()
        self.addCleanup(reactor._poller.close)
        self.assertEqual(_reactor_module(reactor), "twisted_lambdagw.daemon.reactor")


def read_after(loop: Loop, client: socket.socket, count: int) -> bytes:
    """
    C{count} bytes from C{client}, the loop turning while they are awaited.
    """
    client.setblocking(False)
    got = b""
    deadline = loop.reactor.seconds() + TIMEOUT
    while len(got) < count and loop.reactor.seconds() < deadline:
        loop.reactor.iterate(0.01)
        with contextlib.suppress(BlockingIOError):
            got += client.recv(count - len(got))
    return got


INSTALLED = """
from twisted.application.reactors import getReactorTypes, installReactor
[plugin] = [r for r in getReactorTypes() if r.shortName == "lambdagw-epoll"]
print(plugin.moduleName)
reactor = installReactor("lambdagw-epoll")
from twisted.internet import reactor as installed
assert installed is reactor
print(type(reactor).__module__ + "." + type(reactor).__name__)
"""


class PluginTests(SynchronousTestCase):
    """
    The reactor is twistd's to choose, by its plugin: C{--reactor lambdagw-epoll}.
    """

    def test_chosen_by_name(self) -> None:
        home = Path(self.mktemp())
        home.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", INSTALLED],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=child_environment(home),
        )
        self.assertEqual(
            done.stdout.split(),
            ["twisted_lambdagw.daemon.reactor", "twisted_lambdagw.daemon.reactor.GatewayReactor"],
        )
