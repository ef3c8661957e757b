"""
The warm pool's bookkeeping, with in-memory workers and a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.errors import InvokeFailed, InvokeTimeout, Throttled
from twisted_lambdagw.invokers.local.pool import FunctionPool, PooledWorker
from twisted_lambdagw.invokers.local.runtime_api import Invocation, Outcome, WithdrawnError


class MemoryWorker:
    """
    A worker whose runtime the test plays: it answers, fails or exits on demand.
    """

    def __init__(self, on_exit: Callable[[PooledWorker], None]) -> None:
        self.on_exit = on_exit
        self.reusable = True
        self.started = False
        self.stopped = False
        self.delivered = False
        self.invocations: list[Invocation] = []
        self.deadlines: list[float] = []
        self.current: Deferred[Outcome] | None = None

    def start(self) -> None:
        self.started = True

    def run(self, invocation: Invocation, deadline: float) -> Deferred[Outcome]:
        assert self.current is None, "one invocation at a time"
        self.invocations.append(invocation)
        self.deadlines.append(deadline)
        self.delivered = False
        self.current = Deferred()
        return self.current

    def withdraw(self) -> bool:
        if self.current is None or self.delivered:
            return False
        current, self.current = self.current, None
        current.errback(WithdrawnError())
        return True

    def stop(self) -> Deferred[None]:
        self.stopped = True
        self.reusable = False
        return succeed(None)

    def answer(self, payload: bytes = b"{}") -> None:
        assert self.current is not None
        current, self.current = self.current, None
        current.callback(Outcome(payload))

    def crash(self) -> None:
        assert self.current is not None
        current, self.current = self.current, None
        self.reusable = False
        current.errback(InvokeFailed(detail="exited"))
        self.on_exit(self)


def invocation(n: int = 1) -> Invocation:
    return Invocation(f"req-{n}", b"{}", 0, "arn", "Root=1", f"gw-{n}")


class FunctionPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.workers: list[MemoryWorker] = []
        self.pool = self.make_pool()

    def make_worker(self, on_exit: Callable[[PooledWorker], None]) -> MemoryWorker:
        worker = MemoryWorker(on_exit)
        self.workers.append(worker)
        return worker

    def make_pool(self, concurrency: int = 2, queue_size: int = 1) -> FunctionPool:
        return FunctionPool(
            "probe",
            self.make_worker,
            self.clock,
            concurrency=concurrency,
            queue_size=queue_size,
            idle_timeout=300.0,
        )

    def test_start_on_first_use(self) -> None:
        """No worker exists before the first call; the first call starts one."""
        self.assertEqual(self.pool.size, 0)
        result = self.pool.invoke(invocation(), 30.0)
        self.assertEqual(len(self.workers), 1)
        self.assertTrue(self.workers[0].started)
        self.assertEqual(self.workers[0].deadlines, [30.0])
        self.workers[0].answer(b'"hi"')
        self.assertEqual(self.successResultOf(result), Outcome(b'"hi"'))

    def test_warm_reuse(self) -> None:
        """A free worker takes the next call instead of a new one starting."""
        self.pool.invoke(invocation(1), 30.0)
        self.workers[0].answer()
        self.assertEqual(self.pool.idle, 1)
        self.pool.invoke(invocation(2), 30.0)
        self.assertEqual(len(self.workers), 1)
        self.assertEqual([i.request_id for i in self.workers[0].invocations], ["req-1", "req-2"])

    def test_scale_queue_throttle(self) -> None:
        """Busy workers make the pool grow to concurrency, then queue, then throttle."""
        first = self.pool.invoke(invocation(1), 30.0)
        self.pool.invoke(invocation(2), 30.0)
        queued = self.pool.invoke(invocation(3), 30.0)
        self.assertEqual((len(self.workers), self.pool.queued), (2, 1))
        self.assertRaises(Throttled, self.pool.invoke, invocation(4), 30.0)
        self.workers[0].answer(b"1")
        self.assertEqual(self.successResultOf(first), Outcome(b"1"))
        self.assertEqual(self.workers[0].invocations[-1].request_id, "req-3")
        self.workers[0].answer(b"3")
        self.assertEqual(self.successResultOf(queued), Outcome(b"3"))

    def test_queue_deadline(self) -> None:
        """A call still queued at its deadline is a timeout; no worker is touched."""
        self.pool = self.make_pool(concurrency=1)
        self.pool.invoke(invocation(1), 30.0)
        queued = self.pool.invoke(invocation(2), 10.0)
        self.clock.advance(10.0)
        self.failureResultOf(queued, InvokeTimeout)
        self.assertEqual(self.pool.queued, 0)
        self.assertFalse(self.workers[0].stopped)

    def test_idle_timeout(self) -> None:
        """A worker idle for idle_timeout is stopped; one used meanwhile is kept."""
        self.pool.invoke(invocation(1), 30.0)
        self.workers[0].answer()
        self.clock.advance(299.0)
        self.pool.invoke(invocation(2), 30.0)
        self.clock.advance(2.0)
        self.assertFalse(self.workers[0].stopped)
        self.workers[0].answer()
        self.clock.advance(300.0)
        self.assertTrue(self.workers[0].stopped)
        self.assertEqual(self.pool.size, 0)

    def test_failed_worker_replaced(self) -> None:
        """A worker that failed is stopped, and the next call starts a new one."""
        failed = self.pool.invoke(invocation(1), 30.0)
        self.workers[0].crash()
        self.failureResultOf(failed, InvokeFailed)
        self.assertTrue(self.workers[0].stopped)
        self.pool.invoke(invocation(2), 30.0)
        self.assertEqual(len(self.workers), 2)

    def test_failed_worker_frees_room_for_queue(self) -> None:
        """When a busy worker fails, a queued call gets a fresh worker."""
        self.pool = self.make_pool(concurrency=1)
        failed = self.pool.invoke(invocation(1), 30.0)
        queued = self.pool.invoke(invocation(2), 30.0)
        self.workers[0].crash()
        self.failureResultOf(failed, InvokeFailed)
        self.assertEqual(self.workers[1].invocations[0].request_id, "req-2")
        self.workers[1].answer(b"2")
        self.assertEqual(self.successResultOf(queued), Outcome(b"2"))

    def test_failure_of_a_sound_worker(self) -> None:
        """A call that failed on a worker still fit for use leaves the worker in the pool."""
        result = self.pool.invoke(invocation(1), 30.0)
        current = self.workers[0].current
        assert current is not None
        self.workers[0].current = None
        current.errback(InvokeTimeout(detail="still starting"))
        self.failureResultOf(result, InvokeTimeout)
        self.assertEqual(self.pool.idle, 1)
        self.assertFalse(self.workers[0].stopped)

    def test_unreusable_outcome(self) -> None:
        """A worker whose outcome says not to reuse it is stopped after answering."""
        result = self.pool.invoke(invocation(1), 30.0)
        current = self.workers[0].current
        assert current is not None
        self.workers[0].current = None
        current.callback(Outcome(b"{}", "Function.ResponseSizeTooLarge", reusable=False))
        self.assertEqual(self.successResultOf(result).error_type, "Function.ResponseSizeTooLarge")
        self.assertTrue(self.workers[0].stopped)

    def test_idle_worker_exits(self) -> None:
        """A worker that exits while idle leaves the pool."""
        self.pool.invoke(invocation(1), 30.0)
        self.workers[0].answer()
        self.workers[0].on_exit(self.workers[0])
        self.assertEqual((self.pool.size, self.pool.idle), (0, 0))

    def test_cancel_queued(self) -> None:
        """Cancelling a queued call removes it from the queue."""
        self.pool = self.make_pool(concurrency=1)
        self.pool.invoke(invocation(1), 30.0)
        queued = self.pool.invoke(invocation(2), 30.0)
        queued.cancel()
        self.failureResultOf(queued, CancelledError)
        self.assertEqual(self.pool.queued, 0)
        self.workers[0].answer()
        self.assertEqual(len(self.workers[0].invocations), 1)

    def test_cancel_before_delivery(self) -> None:
        """Cancelling before the runtime took the event withdraws it; the worker stays."""
        result = self.pool.invoke(invocation(1), 30.0)
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(self.pool.idle, 1)
        self.assertFalse(self.workers[0].stopped)

    def test_cancel_after_delivery(self) -> None:
        """A delivered call that is cancelled runs to its end; nothing is logged as an error."""
        result = self.pool.invoke(invocation(1), 30.0)
        self.workers[0].delivered = True
        with capturedLogs() as events:
            result.cancel()
            self.failureResultOf(result, CancelledError)
            self.assertEqual(self.pool.idle, 0)
            self.workers[0].answer()
        self.assertEqual(self.pool.idle, 1)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info])
        self.assertIn("abandoned", events[0]["log_format"])

    def test_renew(self) -> None:
        """After renew, idle workers stop at once and busy ones when they finish."""
        self.pool.invoke(invocation(1), 30.0)
        self.pool.invoke(invocation(2), 30.0)
        self.workers[0].answer()
        self.pool.renew(self.make_worker)
        self.assertTrue(self.workers[0].stopped)
        self.assertFalse(self.workers[1].stopped)
        self.workers[1].answer()
        self.assertTrue(self.workers[1].stopped)
        self.pool.invoke(invocation(3), 30.0)
        self.assertEqual(len(self.workers), 3)

    def test_stop(self) -> None:
        """stop() fails queued calls, stops all workers and refuses new calls."""
        self.pool = self.make_pool(concurrency=1)
        self.pool.invoke(invocation(1), 30.0)
        queued = self.pool.invoke(invocation(2), 30.0)
        self.successResultOf(Deferred.fromCoroutine(self.pool.stop()))
        self.failureResultOf(queued, InvokeFailed)
        self.assertTrue(self.workers[0].stopped)
        self.assertRaises(InvokeFailed, self.pool.invoke, invocation(3), 30.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
