"""
The assumptions C{twisted_lambdagw._compat} makes about other packages'
private state, each asserted against the installed package.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_lambdagw._compat import redis_pool_connections, redis_pool_retry_delays
from twisted_lambdagw.policies.limits.config import StoreConfig
from twisted_lambdagw.policies.limits.redis import connect

from .redis_fixtures import RedisServer


def real_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class TxRedisPoolTests(TestCase):
    """
    txredisapi's pool: C{handler._factory}, its reconnection delays and its
    list of connections.
    """

    timeout = 30

    def test_retry_delays(self) -> None:
        """
        C{retryDelay} (the pool's reconnection policy) reads C{initialDelay}
        and C{maxDelay} at every attempt, so setting them bounds the wait.
        """
        import txredisapi  # type: ignore[import-untyped]

        factory = txredisapi.RedisFactory(None, 0, 1, isLazy=True)
        handler = factory.handler
        self.assertIs(handler._factory, factory)
        factory.jitter = 0
        self.assertEqual(factory.retryDelay(10), factory.maxDelay)
        self.assertGreater(factory.retryDelay(10), 1.0)
        redis_pool_retry_delays(handler, initial=0.1, maximum=1.0)
        self.assertEqual(factory.retryDelay(1), 0.1)
        self.assertEqual(factory.retryDelay(10), 1.0)

    async def test_pool_connections(self) -> None:
        """
        C{_factory.pool} is one list for the pool's life: a connection is in
        it once ready (C{connected} true, C{execute_command} answering) and
        leaves it once lost.
        """
        redis = RedisServer(self)
        redis.start()
        reactor = real_reactor()
        config = StoreConfig(kind="redis", url=redis.url, host="127.0.0.1", port=redis.port)
        client = connect(config, 1.0, poolsize=2)
        self.addCleanup(client.disconnect)
        connections = redis_pool_connections(client)
        for _ in range(200):
            if len(connections) == 2:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(len(connections), 2)
        self.assertTrue(all(c.connected for c in connections))
        self.assertEqual(await connections[0].execute_command(b"PING"), "PONG")
        redis.kill()
        for _ in range(200):
            if not connections:
                break
            await deferLater(reactor, 0.01)
        self.assertIs(redis_pool_connections(client), connections)
        self.assertEqual(connections, [])
