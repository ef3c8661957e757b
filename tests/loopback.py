"""
Access to the real reactor for the tests that need real sockets or processes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure


def real_reactor() -> Any:
    """
    The global reactor, imported only when a loopback test runs.
    """
    from twisted.internet import reactor

    return reactor


class RawClient(Protocol):
    """
    Sends fixed bytes and keeps every byte of the answer until the connection closes.
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
