"""
The gateway's one limits store: built from C{[gateway] limits_store},
shared by every route's limit steps, kept across a reload that names the
same store, closed when the gateway stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from .config import RouteLimits, StoreConfig
from .step import StoreHealth
from .store import Decision, LimitsStore, MemoryStore, StoreUnavailable

REDIS_TIMEOUT = 0.25
"""Seconds a check may wait for Redis (or a connection to it) before C{limits_store_down}."""


class SharedStore:
    """
    The store the routes' limit steps count in, and its health.

    @ivar config: what it was built from (C{[gateway] limits_store}).
    """

    def __init__(self, config: StoreConfig, store: LimitsStore, health: StoreHealth) -> None:
        self.config = config
        self.store = store
        self.health = health

    def serves(self, config: StoreConfig) -> bool:
        """
        Whether C{config} names this same store (C{limits_store_down} aside).
        """
        return replace(self.config, down="allow") == replace(config, down="allow")

    def close(self) -> Deferred[None]:
        """
        Close its connections (a Redis pool); nothing to close for memory.
        """
        close = getattr(self.store, "close", None)
        if close is None:
            return succeed(None)
        return Deferred.fromCoroutine(close())


def open_store(
    config: StoreConfig | None,
    clock: IReactorTime,
    count_error: Callable[[], None] = lambda: None,
    *,
    timeout: float = REDIS_TIMEOUT,
) -> SharedStore:
    """
    The store C{config} names: this process's memory, or a Redis pool that
    connects in the background (a check before it is up waits at most
    C{timeout}, then C{limits_store_down} applies).
    """
    config = config or StoreConfig()
    store: LimitsStore
    if config.kind == "memory":
        store = MemoryStore(clock)
    else:
        from .redis import RedisStore, connect

        store = RedisStore(
            connect(config, timeout, clock), clock, url=config.url, timeout=timeout, now=time.time
        )
    return SharedStore(config, store, StoreHealth(clock, store.describe(), count_error))


class NamedStore:
    """
    A store that only names itself: C{lambdagw check} shows the chains
    without connecting anywhere.
    """

    def __init__(self, config: StoreConfig) -> None:
        self._name = "memory (per process)" if config.kind == "memory" else f"redis {config.url}"

    async def check(self, key: str, limits: RouteLimits) -> Decision:
        raise StoreUnavailable("not connected (lambdagw check)")

    def describe(self) -> str:
        return self._name


def named_store(config: StoreConfig | None, clock: IReactorTime) -> SharedStore:
    """
    C{config}'s store as L{NamedStore}, for describing chains.
    """
    config = config or StoreConfig()
    store = NamedStore(config)
    return SharedStore(config, store, StoreHealth(clock, store.describe()))


class LimitsStoreService(Service):
    """
    Closes the limits store when the gateway stops (after the drain: the
    requests under way still count).

    @ivar shared: the store serving now, or None; a reload may replace it.
    """

    def __init__(self, shared: SharedStore | None) -> None:
        self.shared = shared

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.shared is None:
            return succeed(None)
        return self.shared.close()
