"""
The warm workers of one function, as Lambda keeps them.

Each worker handles one invocation at a time.  Workers start on first use
and the pool grows up to ``concurrency``; a free worker is reused while it
is warm (the most recently used first, so the others can reach their idle
timeout) and stopped after ``idle_timeout``.  When every worker is busy a
call waits in a bounded queue; a full queue is L{Throttled} (503), and a
call still queued at its deadline is L{InvokeTimeout} (504).

A worker that failed (killed at the deadline, exited, init error, protocol
error) says so through ``reusable`` and is stopped, never reused; the next
call starts a fresh one.

Deadlines are the caller's: a call's deadline is its arrival plus the
route's timeout, so time spent queued or waiting for a cold start counts,
and the handler's remaining time is the time the client will still wait.

Cancelling the Deferred from L{FunctionPool.invoke} (the client went away)
drops a queued call, and takes back an event the runtime has not received
yet.  An event the runtime already has is left to finish and its result is
discarded: killing the process instead would cut the handler off in the
middle of whatever side effects it has, which Lambda never does when a
caller disconnects, and would cost the next caller a cold start.  The
deadline still bounds how long the worker stays busy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_lambdagw.core.errors import InvokeFailed, InvokeTimeout, Throttled

from .runtime_api import Invocation, Outcome, WithdrawnError


class PooledWorker(Protocol):
    """
    What the pool needs from a worker (L{twisted_lambdagw.invokers.local.worker.Worker}).
    """

    reusable: bool

    def start(self) -> None: ...

    def run(self, invocation: Invocation, deadline: float) -> Deferred[Outcome]: ...

    def withdraw(self) -> bool: ...

    def stop(self) -> Deferred[None]: ...


WorkerFactory = Callable[[Callable[[PooledWorker], None]], PooledWorker]
"""Makes an unstarted worker that calls its argument when its process exits."""


@dataclass(eq=False)
class _Job:
    invocation: Invocation
    deadline: float
    result: Deferred[Outcome] = field(init=False)
    timer: IDelayedCall | None = None
    worker: PooledWorker | None = None
    abandoned: bool = False


class FunctionPool:
    """
    Warm workers for one function (at one version).
    """

    log = Logger()

    def __init__(
        self,
        function: str,
        make_worker: WorkerFactory,
        clock: IReactorTime,
        *,
        concurrency: int,
        queue_size: int,
        idle_timeout: float,
    ) -> None:
        self.function = function
        self._make_worker = make_worker
        self._clock = clock
        self._concurrency = concurrency
        self._queue_size = queue_size
        self._idle_timeout = idle_timeout
        self._workers: dict[PooledWorker, int] = {}
        """Live workers and the generation (function file) they run."""
        self._generation = 0
        self._idle: list[PooledWorker] = []
        self._idle_timers: dict[PooledWorker, IDelayedCall] = {}
        self._queue: deque[_Job] = deque()
        self._stopping: set[Deferred[None]] = set()
        self._stopped = False

    @property
    def size(self) -> int:
        """Workers alive or starting."""
        return len(self._workers)

    @property
    def idle(self) -> int:
        """Workers waiting for an invocation."""
        return len(self._idle)

    @property
    def queued(self) -> int:
        """Calls waiting for a worker."""
        return len(self._queue)

    def invoke(self, invocation: Invocation, deadline: float) -> Deferred[Outcome]:
        """
        Run ``invocation`` on a free worker, which must finish by ``deadline``.

        Raises L{Throttled} at once when all workers are busy and the queue
        is full.
        """
        if self._stopped:
            raise InvokeFailed("the gateway is stopping", detail="local backend stopped")
        job = _Job(invocation, deadline)
        job.result = Deferred(lambda _: self._abandon(job))
        worker = self._take_worker()
        if worker is not None:
            self._assign(job, worker)
        elif len(self._queue) >= self._queue_size:
            raise Throttled(
                detail=f"{self.function}: {self._concurrency} workers busy,"
                f" {len(self._queue)} calls queued"
            )
        else:
            self._queue.append(job)
            delay = max(0.0, deadline - self._clock.seconds())
            job.timer = self._clock.callLater(delay, self._queue_timeout, job)
        return job.result

    def renew(self, make_worker: WorkerFactory) -> None:
        """
        The function changed: new workers use ``make_worker``, old ones go.

        Idle workers stop now; busy ones stop when their invocation ends.
        """
        self._make_worker = make_worker
        self._generation += 1
        for worker in list(self._idle):
            self._retire(worker)

    async def stop(self) -> None:
        """
        Fail queued calls, stop every worker and wait until they are gone.
        """
        self._stopped = True
        while self._queue:
            job = self._queue.popleft()
            self._cancel_timer(job)
            job.result.errback(InvokeFailed("the gateway is stopping", detail="pool stopped"))
        for worker in list(self._workers):
            self._retire(worker)
        await gatherResults(list(self._stopping))

    def _take_worker(self) -> PooledWorker | None:
        while self._idle:
            worker = self._idle.pop()
            timer = self._idle_timers.pop(worker, None)
            if timer is not None and timer.active():
                timer.cancel()
            if self._usable(worker):
                return worker
            self._retire(worker)
        if len(self._workers) >= self._concurrency:
            return None
        worker = self._make_worker(self._exited)
        self._workers[worker] = self._generation
        try:
            worker.start()
        except Exception as e:
            del self._workers[worker]
            raise InvokeFailed(detail=f"cannot start a worker for {self.function}: {e}") from e
        return worker

    def _usable(self, worker: PooledWorker) -> bool:
        return (
            worker.reusable and not self._stopped and self._workers.get(worker) == self._generation
        )

    def _assign(self, job: _Job, worker: PooledWorker) -> None:
        job.worker = worker
        worker.run(job.invocation, job.deadline).addBoth(self._finished, job, worker)

    def _finished(self, result: Outcome | Failure, job: _Job, worker: PooledWorker) -> None:
        job.worker = None
        withdrawn = isinstance(result, Failure) and result.check(WithdrawnError) is not None
        spent = isinstance(result, Outcome) and not result.reusable
        if self._usable(worker) and not spent:
            self._release(worker)
        else:
            self._retire(worker)
            self._dispatch()
        if not job.abandoned:
            if isinstance(result, Outcome):
                job.result.callback(result)
            else:
                job.result.errback(result)
        elif not withdrawn:
            self.log.info(
                "[{function}] [{request_id}] abandoned invocation ended: {outcome}",
                function=self.function,
                request_id=job.invocation.gateway_request_id,
                outcome=_describe(result),
            )

    def _release(self, worker: PooledWorker) -> None:
        if self._queue:
            job = self._queue.popleft()
            self._cancel_timer(job)
            self._assign(job, worker)
            return
        self._idle.append(worker)
        self._idle_timers[worker] = self._clock.callLater(self._idle_timeout, self._expire, worker)

    def _dispatch(self) -> None:
        """
        Start queued calls while there are free workers or room for new ones.
        """
        while self._queue:
            try:
                worker = self._take_worker()
            except InvokeFailed as e:
                job = self._queue.popleft()
                self._cancel_timer(job)
                job.result.errback(e)
                continue
            if worker is None:
                return
            job = self._queue.popleft()
            self._cancel_timer(job)
            self._assign(job, worker)

    def _retire(self, worker: PooledWorker) -> None:
        self._workers.pop(worker, None)
        if worker in self._idle:
            self._idle.remove(worker)
        timer = self._idle_timers.pop(worker, None)
        if timer is not None and timer.active():
            timer.cancel()
        stopping = worker.stop()
        self._stopping.add(stopping)
        stopping.addBoth(lambda _: self._stopping.discard(stopping))

    def _exited(self, worker: PooledWorker) -> None:
        if worker in self._idle:
            self._retire(worker)
            self._dispatch()

    def _expire(self, worker: PooledWorker) -> None:
        self._idle_timers.pop(worker, None)
        self.log.info("[{function}] stopping an idle worker", function=self.function)
        self._retire(worker)

    def _queue_timeout(self, job: _Job) -> None:
        job.timer = None
        self._queue.remove(job)
        job.result.errback(
            InvokeTimeout(detail=f"{self.function}: no worker became free before the deadline")
        )

    def _abandon(self, job: _Job) -> None:
        job.abandoned = True
        if job in self._queue:
            self._queue.remove(job)
            self._cancel_timer(job)
        elif job.worker is not None:
            job.worker.withdraw()

    def _cancel_timer(self, job: _Job) -> None:
        if job.timer is not None and job.timer.active():
            job.timer.cancel()
        job.timer = None


def _describe(result: Outcome | Failure) -> str:
    if isinstance(result, Failure):
        return f"{result.type.__name__ if result.type else 'error'}: {result.getErrorMessage()}"
    return "response" if result.error_type is None else f"function error {result.error_type!r}"
