"""
The HTTP client for Invoke calls: its pool, endpoints and body producer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from twisted_lambdagw.upstream import persistent_pool


class StartingEndpoint:
    """
    An endpoint that starts and stops the factory it is given, as real
    endpoints do around a connection, without connecting anything.
    """

    def connect(self, factory: Factory) -> Deferred[Protocol | None]:
        factory.doStart()
        factory.doStop()
        return succeed(None)


class PoolTests(SynchronousTestCase):
    """
    The pool keeps many connections and logs nothing per connection.
    """

    def test_no_factory_lines(self) -> None:
        """
        Opening a connection logs no "Starting factory" or "Stopping factory" line.
        """
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        pool = persistent_pool(MemoryReactorClock(), max_per_host=7)
        endpoint: Any = StartingEndpoint()
        self.successResultOf(pool.getConnection(("http", b"127.0.0.1", 80), endpoint))
        self.assertEqual([formatEvent(e) for e in events if "factory" in formatEvent(e)], [])

    def test_sizes(self) -> None:
        """
        The pool is persistent with the given size and idle timeout.
        """
        pool = persistent_pool(MemoryReactorClock(), max_per_host=7, idle_timeout=30)
        self.assertTrue(pool.persistent)
        self.assertEqual((pool.maxPersistentPerHost, pool.cachedConnectionTimeout), (7, 30))
