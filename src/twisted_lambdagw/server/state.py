"""
What the resource serves with, as one object that a reload replaces whole.

A request reads C{GatewayResource.state} once, when it arrives, and uses
that L{RoutingState} to the end: a reload (SIGHUP) builds the next state off
to the side and swaps it in with one assignment, so a request in flight
finishes with the routes, invokers and checks it started with, and every
request that arrives afterwards sees only the new ones.  Nothing a request
can see is ever half old and half new.

Each state counts the requests using it (L{StateUse}), so what only the old
state used (a local backend's worker processes, an upstream connection
pool) is closed once its last request is over, not while it is serving.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred, succeed

from twisted_lambdagw.core.config import RouteConfig
from twisted_lambdagw.core.routing import RouteTable


class Bound(Protocol):
    """
    What a state needs of a route's binding: its route.
    """

    @property
    def route(self) -> RouteConfig: ...


B = TypeVar("B", bound=Bound)


class StateUse:
    """
    How many requests are using one L{RoutingState}, and who waits for none.
    """

    __slots__ = ("_idle", "active", "retired")

    def __init__(self) -> None:
        self.active = 0
        """Requests that started with this state and are not over yet."""
        self.retired = False
        """Set once another state has replaced this one."""
        self._idle: list[Deferred[None]] = []

    def enter(self) -> None:
        """
        A request starts with the state.  (The resource inlines this.)
        """
        self.active += 1

    def leave(self) -> None:
        """
        A request is over.  (The resource inlines this but for L{unused}.)
        """
        self.active -= 1
        if self.active == 0 and self.retired:
            self.unused()

    def unused(self) -> None:
        """
        Fire the L{when_unused} waiters: no request uses the state now.
        """
        idle, self._idle = self._idle, []
        for waiter in idle:
            waiter.callback(None)

    def when_unused(self) -> Deferred[None]:
        """
        Fires once no request is using the state (at once if none is).
        """
        if self.active == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._idle.remove)
        self._idle.append(waiter)
        return waiter


@dataclass(frozen=True, slots=True, eq=False)
class RoutingState(Generic[B]):
    """
    The routes and what serves each, as of one reading of the config.

    Generic in the binding type, the resource's L{Binding}, which this
    module does not import (the resource imports it).

    :ivar bindings: each route's binding, by prefix.
    :ivar table: matches a path to its route.
    :ivar dropped: per route prefix, the request headers never passed on as
        sent (filled as routes are first used; it depends on the route's
        ``header_upstream``, so it belongs to the state).
    :ivar use: the requests using this state.
    """

    bindings: Mapping[str, B]
    table: RouteTable
    dropped: dict[str, frozenset[str]] = field(default_factory=dict)
    use: StateUse = field(default_factory=StateUse)

    @classmethod
    def of(cls, bindings: Sequence[B]) -> RoutingState[B]:
        """
        The state serving C{bindings}, matched by the longest prefix.
        """
        return cls({b.route.prefix: b for b in bindings}, RouteTable([b.route for b in bindings]))


def retire(old: RoutingState[B], close: Sequence[Callable[[], object]]) -> Deferred[None]:
    """
    Mark C{old} replaced; once its last request is over, call each of C{close}.

    Fires after the closers ran (a closer's Deferred is waited for).
    """
    old.use.retired = True

    async def when_done() -> None:
        await old.use.when_unused()
        for closer in close:
            result = closer()
            if isinstance(result, Deferred):
                await result

    return Deferred.fromCoroutine(when_done())
