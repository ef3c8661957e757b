"""
Timeouts for many calls at once, without a timed call for each.

Every invocation on a route gets the route's timeout.  Twisted's
``Deferred.addTimeout`` makes a timed call for each and cancels it when the
call ends: with thousands of invocations under way, the reactor's heap of
timed calls holds thousands of entries, and each request pushes into it
and cancels out of it.  Here the calls that share a duration are kept in
the order they started, which is the order their deadlines come in, with
one timed call per duration, set for the earliest deadline still waited
for.  Adding and cancelling cost a list append and a counter; the timed
call is cancelled only when no call of that duration is left waiting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

_SLACK = 1e-9
"""Seconds a deadline may be met early by: floating-point sums of times."""


class Deadline:
    """
    One call's timeout: L{cancel} it when the call ends.
    """

    __slots__ = ("_on_expiry", "_owner", "_timeout", "at", "expired")

    def __init__(
        self, owner: Deadlines, timeout: float, at: float, on_expiry: Callable[[], object]
    ) -> None:
        self._owner = owner
        self._timeout = timeout
        self.at = at
        self.expired = False
        """Whether the deadline passed (and C{on_expiry} was called)."""
        self._on_expiry: Callable[[], object] | None = on_expiry

    @property
    def waiting(self) -> bool:
        return self._on_expiry is not None

    def cancel(self) -> None:
        """
        The call ended in time: nothing will be called.
        """
        if self._on_expiry is not None:
            self._on_expiry = None
            self._owner._ended(self._timeout)

    def _expire(self) -> None:
        on_expiry, self._on_expiry = self._on_expiry, None
        if on_expiry is not None:
            self.expired = True
            self._owner._ended(self._timeout)
            on_expiry()


class Deadlines:
    """
    Calls C{on_expiry} for each deadline that passes before it is cancelled.

    :param lazy: keep a duration's timed call when the last deadline waiting
        is cancelled (it runs once more and finds nothing to do), rather
        than cancelling it: for deadlines that come and go one at a time,
        where cancelling would mean a new timed call each time.  Call
        L{close} to cancel everything.
    """

    def __init__(self, clock: IReactorTime, *, lazy: bool = False) -> None:
        self._clock = clock
        self._lazy = lazy
        self._queues: dict[float, deque[Deadline]] = {}
        self._waiting: dict[float, int] = {}
        self._timers: dict[float, IDelayedCall | None] = {}
        """The timed call for each duration; None while it runs."""

    def add(self, timeout: float, on_expiry: Callable[[], object]) -> Deadline:
        """
        Call C{on_expiry} in C{timeout} seconds, unless the deadline is cancelled first.
        """
        deadline = Deadline(self, timeout, self._clock.seconds() + timeout, on_expiry)
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
            self._waiting[timeout] = 0
        queue.append(deadline)
        self._waiting[timeout] += 1
        if timeout not in self._timers:
            self._timers[timeout] = self._clock.callLater(timeout, self._expire, timeout)
        return deadline

    def pending(self) -> int:
        """
        Deadlines kept: the ones waited for, and cancelled ones until their time comes.
        """
        return sum(len(queue) for queue in self._queues.values())

    def close(self) -> None:
        """
        Cancel every deadline and timed call.
        """
        for queue in self._queues.values():
            for deadline in queue:
                deadline._on_expiry = None
        for timer in self._timers.values():
            if timer is not None:
                timer.cancel()
        self._queues.clear()
        self._waiting.clear()
        self._timers.clear()

    def _ended(self, timeout: float) -> None:
        self._waiting[timeout] -= 1
        if self._waiting[timeout] == 0 and not self._lazy:
            timer = self._timers.get(timeout)
            if timer is not None:  # (None: it is running, and will clean up)
                timer.cancel()
                self._forget(timeout)

    def _forget(self, timeout: float) -> None:
        del self._timers[timeout]
        del self._queues[timeout]
        del self._waiting[timeout]

    def _expire(self, timeout: float) -> None:
        # Marked running: a deadline added by an expiry's consequences
        # (another request served at once) waits for the timer set below.
        self._timers[timeout] = None
        queue = self._queues[timeout]
        now = self._clock.seconds()
        while queue and (queue[0].at <= now + _SLACK or not queue[0].waiting):
            queue.popleft()._expire()
        if self._waiting[timeout]:
            # The loop stopped at a deadline still waited for, and not due.
            self._timers[timeout] = self._clock.callLater(
                max(0.0, queue[0].at - now), self._expire, timeout
            )
        else:
            self._forget(timeout)
