"""
Timeouts for many calls sharing one timed call per duration.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.net.deadlines import Deadlines


class CountingClock(Clock):
    """
    A clock that counts the timed calls made on it.
    """

    made = 0

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        self.made += 1
        return super().callLater(delay, callable, *args, **kw)


class DeadlinesTests(SynchronousTestCase):
    """
    Each deadline fires at its own time, unless cancelled; one timed call per duration.
    """

    def setUp(self) -> None:
        self.clock = CountingClock()
        self.clock.advance(1_700_000_000)
        self.deadlines = Deadlines(self.clock)
        self.fired: list[str] = []

    def add(self, timeout: float, name: str) -> object:
        return self.deadlines.add(timeout, lambda: self.fired.append(name))

    def test_fires_on_time(self) -> None:
        """
        A deadline fires after its timeout, to the tick, and says so.
        """
        deadline = self.deadlines.add(5, lambda: self.fired.append("a"))
        self.clock.advance(4.999)
        self.assertEqual((self.fired, deadline.expired), ([], False))
        self.clock.advance(0.001)
        self.assertEqual((self.fired, deadline.expired), (["a"], True))
        self.assertEqual((self.clock.getDelayedCalls(), self.deadlines.pending()), ([], 0))

    def test_cancelled(self) -> None:
        """
        A cancelled deadline never fires, and its timed call goes with the last one waiting.
        """
        deadline = self.deadlines.add(5, lambda: self.fired.append("a"))
        deadline.cancel()
        deadline.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual((self.fired, deadline.expired), ([], False))

    def test_staggered(self) -> None:
        """
        Deadlines of one duration started apart fire apart, each on time,
        with one timed call pending at any moment.
        """
        for name in "abc":
            self.add(3, name)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.clock.advance(1)
        # a was added at 0, b at 1, c at 2; it is 3 now.
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, ["a", "b"])
        self.clock.advance(1)
        self.assertEqual(self.fired, ["a", "b", "c"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_some(self) -> None:
        """
        Cancelling deadlines in the middle leaves the others on time.
        """
        kept = [self.add(2, "a")]
        self.clock.advance(0.5)
        dropped = self.deadlines.add(2, lambda: self.fired.append("b"))
        self.clock.advance(0.5)
        kept.append(self.add(2, "c"))
        dropped.cancel()
        self.clock.advance(1)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, ["a", "c"])

    def test_durations_apart(self) -> None:
        """
        Deadlines of different durations do not wait on each other.
        """
        self.add(10, "slow")
        self.add(1, "fast")
        self.clock.advance(1)
        self.assertEqual(self.fired, ["fast"])
        self.clock.advance(9)
        self.assertEqual(self.fired, ["fast", "slow"])

    def test_added_while_firing(self) -> None:
        """
        A deadline added by an expiry fires on its own time, and the ones queued keep theirs.
        """

        def again() -> None:
            self.fired.append("a")
            self.add(2, "again")

        self.deadlines.add(2, again)
        self.clock.advance(1)
        self.add(2, "b")
        self.clock.advance(1)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(1)
        self.assertEqual(self.fired, ["a", "b"])
        self.clock.advance(1)
        self.assertEqual(self.fired, ["a", "b", "again"])

    def test_few_timed_calls(self) -> None:
        """
        A thousand overlapping calls that end in time make one timed call, not a thousand.
        """
        made = self.clock.made
        running = []
        for _ in range(1000):
            running.append(self.add(30, "x"))
            self.clock.advance(0.01)
            if len(running) > 100:
                running.pop(0).cancel()  # type: ignore[attr-defined]
        self.assertEqual(self.clock.made - made, 1)
        self.assertEqual(self.fired, [])

    def test_cancelled_keep_nothing_alive(self) -> None:
        """
        A cancelled deadline drops what it would have called at once, and is
        itself dropped when its time comes.
        """

        class Call:
            def __call__(self) -> None:
                pass

        call = Call()
        alive = weakref.ref(call)
        self.add(5, "other")
        self.deadlines.add(5, call).cancel()
        del call
        gc.collect()
        self.assertIsNone(alive())
        self.assertEqual(self.deadlines.pending(), 2)
        self.clock.advance(5)
        self.assertEqual(self.deadlines.pending(), 0)


class LazyDeadlinesTests(SynchronousTestCase):
    """
    Lazy deadlines keep their timed call across deadlines that come one at a time.
    """

    def test_one_at_a_time(self) -> None:
        """
        Deadlines added and cancelled one after another share one timed call,
        and one left waiting still fires on time.
        """
        clock = CountingClock()
        deadlines = Deadlines(clock, lazy=True)
        fired: list[int] = []
        for n in range(20):
            deadlines.add(10, lambda n=n: fired.append(n)).cancel()  # type: ignore[misc]
            clock.advance(0.25)
        self.assertEqual(clock.made, 1)
        deadlines.add(10, lambda: fired.append(99))
        clock.advance(9.75)
        self.assertEqual(fired, [])
        clock.advance(0.25)
        self.assertEqual(fired, [99])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_close(self) -> None:
        """
        close cancels every deadline and timed call.
        """
        clock = CountingClock()
        deadlines = Deadlines(clock, lazy=True)
        fired: list[str] = []
        deadlines.add(10, lambda: fired.append("a"))
        deadlines.add(20, lambda: fired.append("b")).cancel()
        deadlines.close()
        self.assertEqual((clock.getDelayedCalls(), deadlines.pending()), ([], 0))
        clock.advance(30)
        self.assertEqual(fired, [])
