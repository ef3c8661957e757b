"""
The chain's limit steps: C{"limit-before-auth"} for limits keyed by route,
client or header (a flood never reaches an authorizer) and
C{"limit-after-auth"} for limits keyed by the authorized user.

Answers carry the RateLimit header fields of draft-ietf-httpapi-ratelimit-
headers-11 (structured fields): C{RateLimit-Policy} names the route's
policies (C{"rate"}: the bucket's size as C{q}, the seconds it takes to
fill as C{w}; C{"quota"}: the quota and its window) and C{RateLimit} what
is left of each (C{r}) and when (C{t}, seconds).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import ClassVar

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_lambdagw.core.errors import ServiceUnavailable, TooManyRequests
from twisted_lambdagw.core.messages import Reply

from ..chain import Passage, Stage, SyncStep
from .config import RouteLimits
from .store import Decision, LimitsStore, MemoryStore, StoreUnavailable, quota_window

_WINDOW_SECONDS = {"h": 3600, "day": 86400}


class StoreHealth:
    """
    Logs a store's failures at most once a minute, and its recovery once.
    """

    log = Logger()
    EVERY = 60.0

    def __init__(
        self, clock: IReactorTime, store: str, count_error: Callable[[], None] = lambda: None
    ) -> None:
        self._clock = clock
        self._store = store
        self._count_error = count_error
        self._last_logged: float | None = None
        self._missed = 0
        self.down = False

    def failed(self, why: str, down_policy: str) -> None:
        self._count_error()
        self.down = True
        self._missed += 1
        now = self._clock.seconds()
        if self._last_logged is None or now - self._last_logged >= self.EVERY:
            self.log.error(
                "limits store {store} cannot answer ({why}); {missed} check(s) failed"
                " since the last report; requests are {policy}ed (limits_store_down)",
                store=self._store,
                why=why,
                missed=self._missed,
                policy=down_policy,
            )
            self._last_logged = now
            self._missed = 0

    def answered(self) -> None:
        if self.down:
            self.down = False
            self._last_logged = None
            self._missed = 0
            self.log.info("limits store {store} answers again", store=self._store)


class _Limit:
    """
    What the limit steps share: the key, the answer's RateLimit fields, the
    refusal.  Built by L{limit_step}, which picks the stage from the key and
    the sync variant for the memory store.
    """

    stage: ClassVar[Stage]

    def __init__(
        self,
        limits: RouteLimits,
        store: LimitsStore,
        health: StoreHealth,
        *,
        route: str,
        down: str = "allow",
        now: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self._store = store
        self._health = health
        self._route = route
        self._down = down
        self._now = now
        policies = []
        if limits.rate:
            fill = max(1, round(limits.burst / limits.rate))
            policies.append(f'"rate";q={limits.burst};w={fill}')
        if limits.quota:
            start, end = quota_window(now(), limits.quota_period)
            length = _WINDOW_SECONDS.get(limits.quota_period, end - start)
            policies.append(f'"quota";q={limits.quota};w={length}')
        self._policy = ("RateLimit-Policy", ", ".join(policies))
        # The key's constant part: route, key kind and the limits themselves
        # (a changed limit starts afresh rather than reading another's state).
        self._key_prefix = b"\0".join(
            (
                route.encode("utf-8"),
                limits.key_label.encode("ascii"),
                f"{limits.rate}/{limits.burst}/{limits.quota}/{limits.quota_period}".encode(),
                b"",
            )
        )

    def key(self, passage: Passage) -> str:
        """
        The store key: the route and the key's value, hashed (a header may
        hold a secret, and the store should not learn client addresses).
        """
        kind = self.limits.key
        if kind == "route":
            value = b""
        elif kind == "client":
            value = passage.origin.remote.encode("utf-8")
        elif kind == "user":
            principal = passage.principal
            if principal is not None:
                value = b"u:" + principal.user.encode("utf-8")
            else:  # not reached: a user key needs an authorized route
                value = b"c:" + passage.origin.remote.encode("utf-8")
        else:
            # Requests without the header share one bucket of their own.
            values = passage.request.requestHeaders.getRawHeaders(self.limits.header, [])
            value = b"h:" + values[-1] if values else b"-"
        digest = hashlib.sha256(self._key_prefix + value).hexdigest()[:32]
        return "lambdagw:limit:" + digest

    def _unavailable(self, error: StoreUnavailable) -> None:
        self._health.failed(str(error), self._down)
        if self._down == "deny":
            raise ServiceUnavailable("rate limit store unavailable", detail=str(error)) from None

    def _decided(self, passage: Passage, decision: Decision) -> None:
        self._health.answered()
        passage.answer_headers.append(self._policy)
        passage.answer_headers.append(("RateLimit", self._state(decision)))
        if not decision.allowed:
            passage.exchange.limited = f"{self.limits.key}:{decision.refused_by}"
            message = "quota exceeded" if decision.refused_by == "quota" else "too many requests"
            raise TooManyRequests(
                message,
                detail=f"{decision.refused_by} limit, key {self.limits.key_label}",
                retry_after=decision.retry_after,
            )

    def _state(self, d: Decision) -> str:
        items = []
        if self.limits.rate:
            t = d.retry_after if d.refused_by == "rate" else d.rate_reset
            items.append(f'"rate";r={d.rate_remaining};t={t}')
        if self.limits.quota:
            items.append(f'"quota";r={d.quota_remaining};t={d.quota_reset}')
        return ", ".join(items)

    def describe(self) -> str:
        parts = []
        if self.limits.rate:
            parts.append(f"rate {self.limits.rate_text} burst {self.limits.burst}")
        if self.limits.quota:
            parts.append(f"quota {self.limits.quota}/{self.limits.quota_period}")
        return (
            f"limit {', '.join(parts)} per {self.limits.key_label}"
            f" ({self._store.describe()}, store down: {self._down})"
        )


class LimitStep(_Limit):
    """
    A route's rate limit and quota keyed by route, client or header, in a
    store that may wait (Redis): before authorization.
    """

    stage: ClassVar[Stage] = "limit-before-auth"

    async def __call__(self, passage: Passage) -> Reply | None:
        try:
            decision = await self._store.check(self.key(passage), self.limits)
        except StoreUnavailable as e:
            self._unavailable(e)
            return None
        self._decided(passage, decision)
        return None


class UserLimitStep(LimitStep):
    """
    A limit keyed by the authorized user: checked after authorization.
    """

    stage: ClassVar[Stage] = "limit-after-auth"


class MemoryLimitStep(_Limit, SyncStep):
    """
    L{LimitStep} in this process's memory: it never waits, so the chain
    calls L{check} directly.
    """

    stage: ClassVar[Stage] = "limit-before-auth"
    _store: MemoryStore

    def check(self, passage: Passage) -> Reply | None:
        self._decided(passage, self._store.check_now(self.key(passage), self.limits))
        return None


class MemoryUserLimitStep(MemoryLimitStep):
    """
    L{MemoryLimitStep} keyed by the authorized user.
    """

    stage: ClassVar[Stage] = "limit-after-auth"


def limit_step(
    limits: RouteLimits,
    store: LimitsStore,
    health: StoreHealth,
    *,
    route: str,
    down: str = "allow",
    now: Callable[[], float] = time.time,
) -> LimitStep | MemoryLimitStep:
    """
    The step for a route's limits, at the stage its key needs.
    """
    user = limits.key == "user"
    kind: type[LimitStep] | type[MemoryLimitStep]
    if isinstance(store, MemoryStore):
        kind = MemoryUserLimitStep if user else MemoryLimitStep
    else:
        kind = UserLimitStep if user else LimitStep
    return kind(limits, store, health, route=route, down=down, now=now)
