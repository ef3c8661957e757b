"""
The Redis limits store against a real redis-server: exact limits however
many checks run at once, the script cached again after a flush, keys that
expire by themselves, and a server that is slow, killed and restarted.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_lambdagw.policies.limits.config import RouteLimits, StoreConfig
from twisted_lambdagw.policies.limits.redis import RedisStore, connect
from twisted_lambdagw.policies.limits.store import Decision, StoreUnavailable

from .redis_fixtures import RedisServer

TIMEOUT = 0.3


def real_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class RedisStoreTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.reactor = real_reactor()
        self.redis = RedisServer(self)
        self.redis.start()

    def store(self) -> RedisStore:
        config = StoreConfig(
            kind="redis", url=self.redis.url, host="127.0.0.1", port=self.redis.port
        )
        client = connect(config, TIMEOUT, self.reactor)
        store = RedisStore(client, self.reactor, url=config.url, timeout=TIMEOUT, now=time.time)
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        return store

    async def checks(
        self, store: RedisStore, key: str, limits: RouteLimits, n: int
    ) -> list[Decision]:
        return await gatherResults(
            [Deferred.fromCoroutine(store.check(key, limits)) for _ in range(n)]
        )

    async def test_exact_under_concurrency(self) -> None:
        """
        Two stores (as two gateways) checking at once admit exactly the burst.
        """
        limits = RouteLimits(rate=1 / 3600, rate_text="1/h", burst=7, quota=None)
        first, second = self.store(), self.store()
        decisions = await gatherResults([
            Deferred.fromCoroutine(self.checks(first, "lambdagw:limit:t", limits, 10)),
            Deferred.fromCoroutine(self.checks(second, "lambdagw:limit:t", limits, 10)),
        ])  # fmt: skip
        admitted = [d.allowed for batch in decisions for d in batch]
        self.assertEqual(admitted.count(True), 7)
        refused = [d for batch in decisions for d in batch if not d.allowed]
        self.assertEqual({d.refused_by for d in refused}, {"rate"})
        self.assertTrue(all(d.retry_after > 3000 for d in refused))

    async def test_quota_exact_and_expiring(self) -> None:
        limits = RouteLimits(rate=10.0, rate_text="10/s", burst=10, quota=3, quota_period="h")
        store = self.store()
        decisions = await self.checks(store, "lambdagw:limit:q", limits, 5)
        # Checks sent at once may go on different pooled connections: which
        # ones are admitted is the server's order, how many is exact.
        self.assertEqual(sorted(d.allowed for d in decisions), [False] * 2 + [True] * 3)
        self.assertEqual({d.refused_by for d in decisions}, {None, "quota"})
        keys = sorted(self.redis.keys())
        self.assertEqual(len(keys), 2)
        bucket = "lambdagw:limit:q:b"
        self.assertIn(bucket, keys)
        # The bucket is full again in 0.3 s (3 tokens at 10/s): it expires soon after.
        self.assertLessEqual(int(self.redis.command("PTTL", bucket)[1:]), 1300)
        window = next(k for k in keys if k != bucket)
        ttl = int(self.redis.command("TTL", window)[1:])
        self.assertTrue(0 < ttl <= 3600 + 60, ttl)
        await deferLater(self.reactor, 1.5)
        self.assertEqual(self.redis.command("EXISTS", bucket), b":0")

    async def test_script_flushed(self) -> None:
        """
        NOSCRIPT after a flush: the store runs it by EVAL and goes on.
        """
        limits = RouteLimits(rate=1.0, rate_text="1/s", burst=2)
        store = self.store()
        self.assertTrue((await store.check("lambdagw:limit:f", limits)).allowed)
        self.assertEqual(self.redis.command("SCRIPT", "FLUSH"), b"+OK")
        self.assertTrue((await store.check("lambdagw:limit:f", limits)).allowed)
        self.assertFalse((await store.check("lambdagw:limit:f", limits)).allowed)

    async def test_slow_server(self) -> None:
        limits = RouteLimits(rate=1.0, rate_text="1/s", burst=5)
        store = self.store()
        self.assertTrue((await store.check("lambdagw:limit:s", limits)).allowed)
        self.redis.stall(self, 1.0)
        await deferLater(self.reactor, 0.05)
        started = time.monotonic()
        with self.assertRaises(StoreUnavailable):
            await store.check("lambdagw:limit:s", limits)
        self.assertLess(time.monotonic() - started, 0.9)
        await self.until_answering(store, limits)

    async def test_killed_and_restarted(self) -> None:
        limits = RouteLimits(rate=1 / 3600, rate_text="1/h", burst=1)
        store = self.store()
        self.assertTrue((await store.check("lambdagw:limit:k", limits)).allowed)
        self.redis.kill()
        with self.assertRaises(StoreUnavailable):
            await store.check("lambdagw:limit:k", limits)
        self.redis.start()
        decision = await self.until_answering(store, limits, "lambdagw:limit:k")
        # A new server knows nothing of the old bucket.
        self.assertTrue(decision.allowed)
        self.assertFalse((await store.check("lambdagw:limit:k", limits)).allowed)

    async def until_answering(
        self, store: RedisStore, limits: RouteLimits, key: str = "lambdagw:limit:other"
    ) -> Decision:
        """
        The first decision the store gets once it answers again (within 5 s).
        """
        for _ in range(50):
            try:
                return await store.check(key, limits)
            except StoreUnavailable:
                await deferLater(self.reactor, 0.1)
        self.fail("the store did not answer again within 5 s")
