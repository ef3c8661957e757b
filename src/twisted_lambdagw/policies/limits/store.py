"""
Where limits count: the store protocol, the arithmetic both stores share,
and the per-process memory store.

One check takes one token from the key's bucket and counts one request in
its quota window, or refuses and changes nothing: a refused request never
uses up the quota, and the bucket's refill is computed when it is next
looked at (no timers per key).
"""

from __future__ import annotations

import math
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from .config import RouteLimits

_FIXED_WINDOWS = {"h": 3600, "day": 86400}


class StoreUnavailable(Exception):
    """
    The store could not answer in time (down, slow or refusing).
    """


@dataclass(frozen=True, slots=True)
class Decision:
    """
    What one check found.  Seconds are whole and at least 1 where they are waits.
    """

    allowed: bool
    refused_by: str | None
    """C{rate} or C{quota} when refused."""
    rate_remaining: int
    """Whole tokens left in the bucket after this request."""
    rate_reset: int
    """Seconds until the bucket is full again (0 when it is)."""
    quota_remaining: int
    quota_reset: int
    """Seconds until the quota window ends."""
    retry_after: int
    """When refused: seconds until a request could be admitted."""


class LimitsStore(Protocol):
    async def check(self, key: str, limits: RouteLimits) -> Decision:
        """
        Take one request from C{key}'s bucket and quota window, or refuse it.

        @raise StoreUnavailable: the store cannot answer now.
        """

    def describe(self) -> str:
        """The store, for logs and C{lambdagw check} (never a password)."""


def quota_window(now: float, period: str) -> tuple[int, int]:
    """
    The fixed UTC window holding C{now}: its start and end, in epoch seconds.

    Hours and days are fixed lengths; a month runs from the first of the
    month, 00:00 UTC, to the first of the next, as API Gateway's usage plans
    count them.
    """
    if period in _FIXED_WINDOWS:
        length = _FIXED_WINDOWS[period]
        start = int(now // length) * length
        return start, start + length
    moment = datetime.fromtimestamp(now, UTC)
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    days = monthrange(moment.year, moment.month)[1]
    start = int(first.timestamp())
    return start, start + days * 86400


def whole_seconds(seconds: float) -> int:
    """
    Seconds rounded up to a whole number, at least 1 (C{Retry-After}'s form).
    """
    return max(1, math.ceil(seconds - 1e-9))


def decide(
    limits: RouteLimits,
    tokens: float,
    used: int,
    window_end: float,
    now: float,
) -> tuple[Decision, float, int]:
    """
    The decision for a bucket holding C{tokens} (already refilled to C{now})
    and a window with C{used} requests; with the bucket and count to keep.
    """
    rate = limits.rate or 0.0
    quota = limits.quota or 0
    refused_by = None
    retry = 0.0
    if rate and tokens < 1:
        refused_by, retry = "rate", (1 - tokens) / rate
    elif quota and used >= quota:
        refused_by, retry = "quota", window_end - now
    if refused_by is None:
        tokens = tokens - 1 if rate else tokens
        used = used + 1 if quota else used
    return (
        decision(limits, refused_by, tokens, used, window_end - now, retry),
        tokens,
        used,
    )


def decision(
    limits: RouteLimits,
    refused_by: str | None,
    tokens: float,
    used: int,
    window_left: float,
    retry: float,
) -> Decision:
    rate = limits.rate or 0.0
    return Decision(
        allowed=refused_by is None,
        refused_by=refused_by,
        rate_remaining=max(0, math.floor(tokens + 1e-9)) if rate else 0,
        rate_reset=math.ceil((limits.burst - tokens) / rate - 1e-9) if rate else 0,
        quota_remaining=max(0, (limits.quota or 0) - used),
        quota_reset=whole_seconds(window_left) if limits.quota else 0,
        retry_after=whole_seconds(retry) if refused_by else 0,
    )


class MemoryStore:
    """
    Buckets and quota counts in this process's memory.

    With C{workers = N} each process has its own: a route limited to 100/s
    admits up to N x 100/s in all (each process enforces its share of what
    reaches it).  Keys that would read as fresh (a full bucket, a past
    window) are dropped once a minute, so memory follows the active keys.
    """

    SWEEP_EVERY = 60.0

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """key -> (tokens, when)"""
        self._windows: dict[str, tuple[int, int, int]] = {}
        """key -> (window start, window end, requests counted)"""
        self._limits: dict[str, RouteLimits] = {}
        self._next_sweep = clock.seconds() + self.SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._buckets) + len(self._windows)

    async def check(self, key: str, limits: RouteLimits) -> Decision:
        return self.check_now(key, limits)

    def check_now(self, key: str, limits: RouteLimits) -> Decision:
        now = self._clock.seconds()
        if now >= self._next_sweep:
            self._sweep(now)
        tokens = float(limits.burst)
        if limits.rate:
            stored = self._buckets.get(key)
            if stored is not None:
                tokens = min(tokens, stored[0] + max(0.0, now - stored[1]) * limits.rate)
        start, end = quota_window(now, limits.quota_period) if limits.quota else (0, 0)
        used = 0
        if limits.quota:
            window = self._windows.get(key)
            if window is not None and window[0] == start:
                used = window[2]
        result, tokens, used = decide(limits, tokens, used, end, now)
        if result.allowed:
            self._limits[key] = limits
            if limits.rate:
                self._buckets[key] = (tokens, now)
            if limits.quota:
                self._windows[key] = (start, end, used)
        return result

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        for key, (tokens, when) in list(self._buckets.items()):
            rate = self._limits[key].rate or 1.0
            if tokens + (now - when) * rate >= self._limits[key].burst:
                del self._buckets[key]
        for key, (_, end, _) in list(self._windows.items()):
            if end <= now:
                del self._windows[key]
        for key in list(self._limits):
            if key not in self._buckets and key not in self._windows:
                del self._limits[key]

    def describe(self) -> str:
        return "memory (per process)"
