"""
A bound on the calls under way to one Lambda endpoint, the others waiting in turn.

Every call under way holds a connection to Lambda, and every connection is a
file descriptor.  Without a bound, a burst of slow calls opens as many
connections as there are calls, on top of the clients' own: at 10,000
concurrent requests that is 20,000 descriptors, past a common open-files
limit, and the calls that come last fail (a connect refused with EMFILE) or
their clients are never accepted.  A bound turns that into waiting: a call
beyond it waits in the gateway, first come first served, and takes the slot
of the first call to finish, on the connection that call just gave back to
the pool.

The wait is part of the call: the route's timeout covers it (cancelling a
waiting call, for a timeout or a client gone, removes it from the queue) and
a call is never failed only because many others are under way.

A slot given back by a call that ended passes to the next waiter at once. A
slot given back by a cancelled call (its client left, or its timeout ran
out) passes on at the reactor's next turn instead. Clients leave in bursts
(a client-side timeout that many share, a balancer dropping its
connections): the slot freed by the first departure's call would otherwise
go to the next call in the queue before the reactor has read that the next
client left too, in the same poll, and an Invoke would be signed, sent on a
new connection and aborted at once for nobody. Lambda bills that invocation,
and the gateway pays the send and the abort (measured: 6,000 clients
leaving, 3,000 of them waiting, cost 1.64-2.40 s of CPU with every slot
handed over at once, 0.87-1.32 s with the cancelled calls' slots handed over
a turn later, in runs alternated two by two). One turn later the departures
of that poll have taken their calls out of the queue. Slots of calls that
ended are not held back so: under load one turn of the reactor reads every
connection that is ready, which can take long, and a slot idle that long is
lost capacity (deferring every hand-over cost about 5% of the throughput
with ``max_connections = 1500`` at 10,000 connections, two runs each).

Twisted's C{DeferredSemaphore} has the same shape, but a cancelled waiter
leaves its list by C{list.remove}: when 10,000 clients leave at once, that is
quadratic.  Here a cancelled waiter is skipped when its turn comes, and the
queue is rebuilt once such waiters outnumber the live ones.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["ConnectionLimit"]


class ConnectionLimit:
    """
    At most C{limit} calls under way at once; the others wait, in order.

    Each call takes a slot with L{acquire} and gives it back exactly once,
    whether it succeeded, failed or was cancelled: with L{release}, or
    L{release_later} once cancelled.

    :ivar active: slots taken now, counting those given back and not yet
        passed on.
    :ivar waiting: calls waiting for a slot now.
    """

    compact_above = 64
    """Cancelled waiters kept before the queue is rebuilt without them."""

    def __init__(self, limit: int, clock: IReactorTime) -> None:
        if limit < 1:
            raise ValueError(f"a connection limit must be at least 1, not {limit}")
        self.limit = limit
        self.active = 0
        self.waiting = 0
        self._clock = clock
        self._queue: deque[Deferred[None]] = deque()
        self._cancelled = 0
        self._freed = 0  # slots given back while calls wait, not yet passed on
        self._hand_over_call: IDelayedCall | None = None

    def try_acquire(self) -> bool:
        """
        Take a slot now if one is free and nobody waits; False otherwise.

        The common case of L{acquire} without a Deferred: a caller holding
        a slot this way gives it back as one taken by L{acquire}.
        """
        if self.active < self.limit and not self.waiting:
            self.active += 1
            return True
        return False

    def acquire(self) -> Deferred[None]:
        """
        A Deferred that fires once the caller holds a slot.

        Cancelling it before then gives the slot up (it fails with
        CancelledError); the caller must not then call L{release}.
        """
        if self.try_acquire():
            return succeed(None)
        turn: Deferred[None] = Deferred(self._cancel)
        self._queue.append(turn)
        self.waiting += 1
        return turn

    def release(self) -> None:
        """
        Give a slot back, to the first call still waiting if there is one.
        """
        if self.active - self._freed <= 0:
            raise RuntimeError("ConnectionLimit.release without a slot taken")
        if not self._pass_on():
            self.active -= 1

    def release_later(self) -> None:
        """
        Give a slot back on the reactor's next turn: for a cancelled call,
        whose client may be one of many leaving at once.
        """
        if self.active - self._freed <= 0:
            raise RuntimeError("ConnectionLimit.release without a slot taken")
        if not self.waiting:
            self.active -= 1
            return
        self._freed += 1
        if self._hand_over_call is None:
            self._hand_over_call = self._clock.callLater(0, self._hand_over)

    def _pass_on(self) -> bool:
        """
        Hand one slot to the first live waiter; False if none was left.
        """
        queue = self._queue
        while queue:
            turn = queue.popleft()
            if turn.called:  # cancelled while waiting
                self._cancelled -= 1
                continue
            self.waiting -= 1
            # The slot passes on as it is: active does not change.
            turn.callback(None)
            return True
        return False

    def _hand_over(self) -> None:
        self._hand_over_call = None
        # A waiter woken here may give its slot back at once (its send
        # failed), which passes it on in turn.
        while self._freed:
            self._freed -= 1
            if not self._pass_on():
                self.active -= 1

    def _cancel(self, turn: Deferred[None]) -> None:
        # The Deferred fails with CancelledError on its own; it stays in the
        # queue, skipped when its turn comes, until there are many of those.
        self.waiting -= 1
        self._cancelled += 1
        if self._cancelled > self.compact_above and self._cancelled > self.waiting:
            self._queue = deque(t for t in self._queue if t is not turn and not t.called)
            self._cancelled = 0
