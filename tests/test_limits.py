"""
Rate limits and quotas: their config keys, the memory store's token bucket
and fixed windows on a fake clock, and the step's answers and headers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.core.errors import ServiceUnavailable, TooManyRequests
from twisted_lambdagw.policies.limits.config import RouteLimits, StoreConfig
from twisted_lambdagw.policies.limits.step import (
    LimitStep,
    MemoryLimitStep,
    StoreHealth,
    limit_step,
)
from twisted_lambdagw.policies.limits.store import (
    Decision,
    MemoryStore,
    StoreUnavailable,
    quota_window,
)

from .policy_fixtures import Passage, passage, principal, route_from

JAN_1 = datetime(2030, 1, 1, tzinfo=UTC).timestamp()


def limits(keys: str, auth: str = "") -> RouteLimits:
    route = route_from(keys, auth=auth)
    assert route.limits is not None
    return route.limits


def store_config(gateway: str) -> StoreConfig:
    parsed = parse_config(
        f"[gateway]\n{gateway}\n[route:/a]\nsingle = f\naws_region = us-east-1\n", "gw.ini", {}
    )
    return parsed.gateway.limits_store or StoreConfig()


class ConfigTests(SynchronousTestCase):
    def error(self, keys: str, gateway: str = "") -> str:
        with self.assertRaises(ConfigError) as caught:
            if gateway:
                store_config(gateway)
            else:
                route_from(keys)
        return str(caught.exception)

    def test_rate(self) -> None:
        parsed = limits("rate_limit = 50/s\nrate_key = client")
        self.assertEqual((parsed.rate, parsed.burst, parsed.key), (50.0, 50, "client"))
        parsed = limits("rate_limit = 120/m\nrate_burst = 10\nrate_key = header:X-Api-Key")
        self.assertEqual((parsed.rate, parsed.burst), (2.0, 10))
        self.assertEqual((parsed.key, parsed.header), ("header", b"x-api-key"))

    def test_quota(self) -> None:
        parsed = limits("quota = 10000/day")
        self.assertEqual((parsed.rate, parsed.quota, parsed.quota_period), (None, 10000, "day"))
        self.assertEqual(parsed.key, "route")

    def test_errors(self) -> None:
        cases = {
            "rate_limit = 50": "[route:/api] rate_limit: not a rate like 50/s",
            "rate_limit = 0/s": "[route:/api] rate_limit: not a rate",
            "quota = 5/week": "[route:/api] quota: not a quota",
            "rate_burst = 5": "[route:/api] rate_burst: needs rate_limit or quota",
            "quota = 5/h\nrate_burst = 5": "[route:/api] rate_burst: needs rate_limit",
            "rate_limit = 5/s\nrate_key = ip": "[route:/api] rate_key: must be route, client",
            "rate_limit = 5/s\nrate_key = header:a b": "[route:/api] rate_key: not a header",
            "rate_limit = 5/s\nrate_key = user": "[route:/api] rate_key: 'user' needs an",
        }
        for keys, message in cases.items():
            self.assertIn(f"gw.ini: {message}", self.error(keys), keys)

    def test_store(self) -> None:
        self.assertEqual(store_config("").kind, "memory")
        redis = store_config(
            "limits_store = redis://:s3cret@10.0.0.5:6380/2\nlimits_store_down = deny"
        )
        self.assertEqual(
            (redis.kind, redis.host, redis.port, redis.db, redis.tls, redis.password, redis.down),
            ("redis", "10.0.0.5", 6380, 2, False, "s3cret", "deny"),
        )
        self.assertEqual(redis.url, "redis://:***@10.0.0.5:6380/2")
        self.assertTrue(store_config("limits_store = rediss://cache.example/0").tls)
        unix = store_config("limits_store = unix:///run/redis.sock?db=3")
        self.assertEqual((unix.unix_path, unix.db), ("/run/redis.sock", 3))

    def test_store_errors(self) -> None:
        for value in ("redis://", "redis://h:99999/0", "redis://h/x", "http://h/0",
                      "unix://h/run/s", "unix:///run/s?db=x", "memcached"):  # fmt: skip
            self.assertIn(
                "gw.ini: [gateway] limits_store: must be memory, redis://",
                self.error("", gateway=f"limits_store = {value}"),
                value,
            )
        self.assertNotIn("pw", self.error("", gateway="limits_store = redis://:pw@h/x"))
        self.assertIn(
            "[gateway] limits_store_down: must be one of allow, deny",
            self.error("", gateway="limits_store_down = maybe"),
        )


class QuotaWindowTests(SynchronousTestCase):
    def test_windows(self) -> None:
        feb = datetime(2030, 2, 10, 13, 30, tzinfo=UTC).timestamp()
        start = datetime(2030, 2, 1, tzinfo=UTC).timestamp()
        end = datetime(2030, 3, 1, tzinfo=UTC).timestamp()
        self.assertEqual(quota_window(feb, "month"), (start, end))
        day = datetime(2030, 2, 10, tzinfo=UTC).timestamp()
        self.assertEqual(quota_window(feb, "day"), (day, day + 86400))
        hour = datetime(2030, 2, 10, 13, tzinfo=UTC).timestamp()
        self.assertEqual(quota_window(feb, "h"), (hour, hour + 3600))


class MemoryStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(JAN_1)
        self.store = MemoryStore(self.clock)

    def admitted(self, key: str, parsed: RouteLimits, count: int) -> list[bool]:
        return [self.store.check_now(key, parsed).allowed for _ in range(count)]

    def test_burst_then_refill(self) -> None:
        parsed = limits("rate_limit = 2/s\nrate_burst = 4")
        self.assertEqual(self.admitted("k", parsed, 5), [True] * 4 + [False])
        refused = self.store.check_now("k", parsed)
        self.assertEqual((refused.refused_by, refused.retry_after), ("rate", 1))
        self.clock.advance(0.5)  # one token back
        self.assertEqual(self.admitted("k", parsed, 2), [True, False])
        self.clock.advance(10)
        self.assertEqual(self.admitted("k", parsed, 5), [True] * 4 + [False])

    def test_keys_apart(self) -> None:
        parsed = limits("rate_limit = 1/m")
        self.assertEqual(self.admitted("a", parsed, 2), [True, False])
        self.assertEqual(self.admitted("b", parsed, 1), [True])
        refused = self.store.check_now("a", parsed)
        self.assertEqual(refused.retry_after, 60)

    def test_quota_window(self) -> None:
        parsed = limits("quota = 3/h")
        self.clock.advance(3600 - 10)
        self.assertEqual(self.admitted("k", parsed, 4), [True] * 3 + [False])
        refused = self.store.check_now("k", parsed)
        self.assertEqual(
            (refused.refused_by, refused.retry_after, refused.quota_reset), ("quota", 10, 10)
        )
        self.clock.advance(10)
        self.assertEqual(self.admitted("k", parsed, 4), [True] * 3 + [False])

    def test_refused_by_rate_uses_no_quota(self) -> None:
        parsed = limits("rate_limit = 1/s\nquota = 2/day")
        self.assertEqual(self.admitted("k", parsed, 3), [True, False, False])
        self.clock.advance(1)
        self.assertEqual(self.store.check_now("k", parsed).quota_remaining, 0)
        self.clock.advance(1)
        self.assertEqual(self.store.check_now("k", parsed).refused_by, "quota")

    def test_sweep_forgets_fresh_keys(self) -> None:
        parsed = limits("rate_limit = 1/s\nquota = 5/h")
        self.admitted("a", parsed, 1)
        self.admitted("b", limits("rate_limit = 1/s"), 1)
        self.assertEqual(len(self.store), 3)
        self.clock.advance(61)
        self.admitted("c", limits("rate_limit = 1/s"), 1)
        self.assertEqual(len(self.store), 2)  # a's window is still on; c is new


class FailingStore:
    def __init__(self) -> None:
        self.calls = 0

    async def check(self, key: str, limits: RouteLimits) -> Decision:
        self.calls += 1
        raise StoreUnavailable("connection refused")

    def describe(self) -> str:
        return "redis redis://127.0.0.1:1/0"


def run(step: LimitStep | MemoryLimitStep, p: Passage) -> None:
    d = Deferred.fromCoroutine(step(p))
    results: list[object] = []
    d.addBoth(results.append)
    (result,) = results
    if isinstance(result, Failure):
        result.raiseException()


class StepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(JAN_1 + 3000)
        self.store = MemoryStore(self.clock)
        self.errors = 0

    def count_error(self) -> None:
        self.errors += 1

    def step(
        self, keys: str, down: str = "allow", store: object = None, auth: str = ""
    ) -> LimitStep | MemoryLimitStep:
        route = route_from(keys, auth=auth)
        assert route.limits is not None
        return limit_step(
            route.limits,
            store or self.store,  # type: ignore[arg-type]
            StoreHealth(self.clock, "test", self.count_error),
            route=route.prefix,
            down=down,
            now=self.clock.seconds,
        )

    def test_headers_and_refusal(self) -> None:
        step = self.step("rate_limit = 2/s\nrate_burst = 4\nquota = 100/h\nrate_key = client")
        self.assertEqual(step.stage, "limit-before-auth")
        p = passage(route_from(""))
        run(step, p)
        self.assertEqual(
            p.answer_headers,
            [
                ("RateLimit-Policy", '"rate";q=4;w=2, "quota";q=100;w=3600'),
                ("RateLimit", '"rate";r=3;t=1, "quota";r=99;t=600'),
            ],
        )
        for _ in range(3):
            run(step, passage(route_from("")))
        p = passage(route_from(""))
        with self.assertRaises(TooManyRequests) as caught:
            run(step, p)
        self.assertEqual(caught.exception.response_headers(), [("Retry-After", "1")])
        self.assertEqual(p.answer_headers[1], ("RateLimit", '"rate";r=0;t=1, "quota";r=96;t=600'))
        self.assertEqual(p.exchange.limited, "client:rate")
        # Another client has its own bucket.
        run(step, passage(route_from(""), remote="192.0.2.99"))

    def test_keys(self) -> None:
        by_header = self.step("rate_limit = 1/h\nrate_key = header:x-api-key")
        run(by_header, passage(route_from(""), headers=[(b"x-api-key", b"one")]))
        run(by_header, passage(route_from(""), headers=[(b"x-api-key", b"two")]))
        run(by_header, passage(route_from("")))
        with self.assertRaises(TooManyRequests):
            run(by_header, passage(route_from(""), headers=[(b"x-api-key", b"one")]))
        by_route = self.step("rate_limit = 1/h")
        run(by_route, passage(route_from("")))
        with self.assertRaises(TooManyRequests):
            run(by_route, passage(route_from(""), remote="192.0.2.99"))

    def test_user_key_after_auth(self) -> None:
        step = self.step("rate_limit = 1/h\nrate_key = user\nauth = basic",
                         auth="[auth]\nusers_file = /dev/null")  # fmt: skip
        self.assertEqual(step.stage, "limit-after-auth")
        alice = passage(route_from(""))
        alice.principal = principal("alice")
        run(step, alice)
        bob = passage(route_from(""))
        bob.principal = principal("bob")
        run(step, bob)
        with self.assertRaises(TooManyRequests):
            run(step, alice)

    def test_quota_message(self) -> None:
        step = self.step("quota = 1/day")
        run(step, passage(route_from("")))
        with self.assertRaises(TooManyRequests) as caught:
            run(step, passage(route_from("")))
        self.assertEqual(caught.exception.message, "quota exceeded")
        self.assertEqual(caught.exception.retry_after, 86400 - 3000)

    def test_store_down_allow(self) -> None:
        failing = FailingStore()
        step = self.step("rate_limit = 1/s", store=failing)
        p = passage(route_from(""))
        run(step, p)
        run(step, passage(route_from("")))
        self.assertEqual((failing.calls, self.errors), (2, 2))
        self.assertEqual(p.answer_headers, [])

    def test_store_down_deny(self) -> None:
        step = self.step("rate_limit = 1/s", down="deny", store=FailingStore())
        with self.assertRaises(ServiceUnavailable) as caught:
            run(step, passage(route_from("")))
        self.assertEqual(caught.exception.status, 503)

    def test_describe(self) -> None:
        self.assertEqual(
            self.step(
                "rate_limit = 50/s\nrate_burst = 100\nquota = 10/day\nrate_key = client"
            ).describe(),
            "limit rate 50/s burst 100, quota 10/day per client (memory (per process),"
            " store down: allow)",
        )


class StoreHealthTests(SynchronousTestCase):
    def test_logged_once_a_minute(self) -> None:
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        clock = Clock()
        counted: list[None] = []
        health = StoreHealth(clock, "redis x", lambda: counted.append(None))
        for _ in range(3):
            health.failed("timeout", "allow")
            clock.advance(20)
        health.failed("timeout", "allow")
        logged = [e for e in events if "cannot answer" in e.get("log_format", "")]
        self.assertEqual([e["missed"] for e in logged], [1, 3])
        self.assertEqual(len(counted), 4)
        health.answered()
        self.assertTrue(any("answers again" in e.get("log_format", "") for e in events))
