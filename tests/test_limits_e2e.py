"""
One limit across real gateway processes sharing a real C{redis-server}:
two C{twistd} gateways, C{workers = 2}, and the server killed and started
again under C{limits_store_down = allow} and C{= deny}.
"""

from __future__ import annotations

import contextlib
import os
import signal

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from .process_fixtures import twistd_command
from .redis_fixtures import RedisServer
from .test_twistd_e2e import (
    ACCESS_KEY,
    LISTENING,
    REGION,
    SECRET_KEY,
    LoopbackLambdaTestCase,
)
from .test_workers_e2e import WORKER_LISTENING, WORKER_STARTED

BURST = 7
OK = 203
"""What the loopback Lambda's hello answers."""


class SharedLimitTests(LoopbackLambdaTestCase):
    timeout = 90

    def setUp(self) -> None:
        super().setUp()
        self.redis = RedisServer(self)
        self.redis.start()

    def config(self, lambda_port: int, gateway: str = "", burst: int = BURST) -> str:
        return str(
            self.write_config(
                f"""\
                [gateway]
                limits_store = {self.redis.url}
                {gateway}

                [aws]
                region = {REGION}
                access_key_id = {ACCESS_KEY}
                secret_access_key = {SECRET_KEY}
                endpoint_url = http://127.0.0.1:{lambda_port}

                [route:/lambda/]
                rate_limit = 1/h
                rate_burst = {burst}
                """
            )
        )

    async def gateway(self, config: str) -> int:
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", config]
        child = self.spawn([*argv, "--listen", "tcp:0:interface=127.0.0.1"])
        return int((await child.printed(LISTENING)).group(1))

    def client(self) -> HTTPClient:
        # A new connection per request: with workers, the kernel spreads them.
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(self.reactor, pool=pool))

    async def get(self, client: HTTPClient, port: int) -> tuple[int, bool]:
        """
        One GET: its status, and whether it carried the RateLimit fields.
        """
        response = await client.get(f"http://127.0.0.1:{port}/lambda/hello/x")
        await response.content()
        return int(response.code), response.headers.hasHeader("ratelimit")

    async def codes(self, ports: list[int], count: int) -> list[int]:
        client = self.client()
        results = await gatherResults(
            [Deferred.fromCoroutine(self.get(client, ports[i % len(ports)])) for i in range(count)]
        )
        return [code for code, _ in results]

    async def test_two_gateways_one_limit(self) -> None:
        """
        Two gateway processes, 20 requests at once spread over both: exactly
        the burst is admitted in all.
        """
        fake, lambda_port = await self.start_fake_lambda()
        config = self.config(lambda_port)
        ports = await gatherResults(
            [Deferred.fromCoroutine(self.gateway(config)) for _ in range(2)]
        )
        codes = await self.codes(ports, 20)
        self.assertEqual(sorted(codes), [OK] * BURST + [429] * (20 - BURST))
        self.assertEqual(len(fake.calls), BURST)

    async def test_workers_one_limit(self) -> None:
        """
        C{workers = 2} with the redis store: exactly the burst in all, both
        processes serving.
        """
        fake, lambda_port = await self.start_fake_lambda()
        config = self.config(lambda_port, "workers = 2")
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", config]
        child = self.spawn([*argv, "--listen", "tcp:0:interface=127.0.0.1"])
        port = int((await child.printed(LISTENING)).group(1))
        worker_pid = int((await child.printed(WORKER_STARTED)).group(1))
        self.addCleanup(self.kill_if_alive, worker_pid)
        await child.printed(WORKER_LISTENING)
        codes = await self.codes([port], 20)
        self.assertEqual(sorted(codes), [OK] * BURST + [429] * (20 - BURST))
        self.assertEqual(len(fake.calls), BURST)

    def kill_if_alive(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    async def until_limited_again(self, client: HTTPClient, port: int) -> list[int]:
        """
        Requests, a tenth of a second apart, until one carries the RateLimit
        fields again (the store answers); then until one is refused.
        """
        codes = []
        for _ in range(100):
            code, limited = await self.get(client, port)
            codes.append(code)
            if limited:
                break
            await deferLater(self.reactor, 0.1)
        else:
            self.fail(f"limits never applied again: {codes}")
        for _ in range(3):
            code, limited = await self.get(client, port)
            self.assertTrue(limited)
            codes.append(code)
        return codes

    async def store_down_and_back(self, down: str) -> list[int]:
        """
        Burst 2: two admitted, one refused; redis killed: three requests
        with the store down; redis started again (empty): the limits apply
        again.  The statuses with the store down.
        """
        fake, lambda_port = await self.start_fake_lambda()
        port = await self.gateway(self.config(lambda_port, f"limits_store_down = {down}", burst=2))
        client = self.client()
        self.assertEqual(
            [await self.get(client, port) for _ in range(3)],
            [(OK, True), (OK, True), (429, True)],
        )
        self.redis.kill()
        while_down = [await self.get(client, port) for _ in range(3)]
        self.assertEqual({limited for _, limited in while_down}, {False})
        self.redis.start()
        codes = await self.until_limited_again(client, port)
        # A fresh server: a fresh bucket of 2, then refusals.
        self.assertEqual(codes[-4:], [OK, OK, 429, 429])
        down_codes = [code for code, _ in while_down]
        # Nothing refused (429, 503) was invoked.
        self.assertEqual(len(fake.calls), 2 + down_codes.count(OK) + codes.count(OK))
        return down_codes

    async def test_store_down_allow(self) -> None:
        self.assertEqual(await self.store_down_and_back("allow"), [OK, OK, OK])

    async def test_store_down_deny(self) -> None:
        self.assertEqual(await self.store_down_and_back("deny"), [503, 503, 503])
