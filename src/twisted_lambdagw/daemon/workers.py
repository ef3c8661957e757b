"""
C{workers = N} in C{[gateway]}: N processes serving the same listeners.

One Python process uses one core; this is how the gateway uses more:

- The parent (the C{twistd} process) binds N sockets per C{listen} line
  with C{SO_REUSEPORT} (L{twisted_lambdagw.daemon.reuseport}), so a port that is
  taken is found once, at startup, before any worker exists.  It serves its
  own share (it is worker 0) and starts N-1 worker processes
  (L{twisted_lambdagw.daemon.worker_main}).
- Each worker gets its sockets as inherited file descriptors and a
  L{worker_pipes.WorkerHandoff} on its stdin: its id and the parent's parsed L{Config}
  (C{--listen} overrides included), so a worker restarted an hour later
  serves exactly what the others serve even if the file was edited since.
  It builds its own gateway from it (upstream pool, local backend) through
  the same C{tap.makeService} as the parent.
- A worker that exits while the gateway runs is logged and started again,
  after a delay that doubles while it keeps failing soon after starting;
  after L{RestartPolicy.max_fast_failures} such failures in a row the whole
  gateway stops and the process exits with status 1.
- On stop (SIGTERM to the parent) the parent closes its copies of the
  workers' sockets and sends SIGTERM to every worker; each stops accepting
  and finishes its in-flight requests as the parent does.  The parent waits
  C{drain_timeout} plus a grace period, then kills what is left.
- A worker watches its stdin pipe: if the parent dies, even by SIGKILL, the
  pipe closes and the worker stops, so no orphan keeps serving.
- A worker's log events travel as JSON lines on its stderr and the parent
  re-emits them into its own log with a C{worker} field (and C{worker N} in
  the text log's system column), so one log, with twistd's rotation and
  whatever observer it has, holds every process.  A worker's stdout is the
  parent's stdout, for C{access_log = -}.
- SIGHUP to the parent has every worker reopen its access log, and the
  parent reloads the config file (L{twisted_lambdagw.daemon.reload}) and hands the
  configuration it then serves to every worker, which applies it.  Both go
  as messages on the worker's stdin pipe (L{worker_pipes.encode_message}), never as
  signals: a worker still starting up reads them once it can, where a
  signal could end it before it has a handler.  A worker started later
  is handed the configuration serving then, so every process serves the
  same one.
- Each process knows its worker id (C{Gateway.worker_id}): its metrics get
  a C{worker} label and its access log records a C{worker} field.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ProcessExitedAlready, ReactorNotRunning
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
    IProtocolFactory,
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from twisted_lambdagw.core.config import Config

from .reuseport import (
    AdoptedListeners,
    EndpointFor,
    bind_shared,
    shared_listeners,
    stop_listening,
)
from .worker_pipes import (
    REOPEN,
    LogRelay,
    WorkerHandoff,
    encode_message,
    plain_options,
)

Observer = Callable[[LogEvent], None]
"""Where log events go: a log publisher, or anything that takes events."""

KILL_GRACE = 5.0
"""Seconds a worker gets beyond C{drain_timeout} before it is killed."""


@dataclass(frozen=True)
class RestartPolicy:
    """
    When a worker that exited is started again, and when to give up.

    A failure is "fast" when the worker ran less than C{stable_after}
    seconds; the delay before the next start doubles with each fast failure
    in a row, and the C{max_fast_failures}-th stops the gateway.
    """

    first_delay: float = 0.5
    max_delay: float = 10.0
    stable_after: float = 10.0
    max_fast_failures: int = 5

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1)))


def _exit_status(reason: Failure) -> str:
    number = getattr(reason.value, "signal", None)
    if number is not None:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(number).name}"
        return f"killed by signal {number}"
    return f"exit status {getattr(reason.value, 'exitCode', None)}"


class _Worker(ProcessProtocol):
    """
    One worker process slot: its process (when running), restarts, output.
    """

    def __init__(self, pool: WorkerPool, worker_id: int, observer: Observer) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.process: IProcessTransport | None = None
        self.pid: int | None = None
        self.started_at = 0.0
        self.fast_failures = 0
        self.restart: IDelayedCall | None = None
        self.relay = LogRelay(worker_id, observer)

    @property
    def running(self) -> bool:
        return self.process is not None

    def signal(self, name: str) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError, ProcessExitedAlready):
                self.process.signalProcess(name)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 2:
            self.relay.feed(data)

    def processEnded(self, reason: Failure) -> None:
        self.relay.flush()
        self.process = None
        self.pool._ended(self, reason)


def exit_after_stop(reactor: Any, status: int) -> None:
    """
    Stop the reactor, and make the process exit with C{status} afterwards.

    twistd and twist always exit 0 after a plain reactor stop; a supervisor
    (systemd's C{Restart=on-failure}) must see that the gateway gave up.
    The exit happens at interpreter exit, after twistd has cleaned up.
    """

    def exit_now() -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()  # type: ignore[union-attr]
        os._exit(status)

    atexit.register(exit_now)
    with contextlib.suppress(ReactorNotRunning):
        reactor.stop()


class WorkersExited(Service):
    """
    Waits, when stopped, until every worker of C{pool} has exited.

    Its own service so that it can stop last, after the parent's drain,
    while the pool (which tells the workers to stop) stops first: the parent
    and its workers drain at the same time.
    """

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.pool.when_exited()


class WorkerPool(Service):
    """
    The parent's side: the shared sockets, its own share, and the workers.

    Stopping it stops the listening, here and in the workers (SIGTERM); its
    C{exited} service, stopped after the parent's own drain, waits for the
    workers to exit, killing those still running C{drain_timeout} plus
    C{kill_grace} seconds after SIGTERM.

    @param spawner: starts the worker processes (the reactor by default).
    @param give_up: called once when a worker keeps failing; by default
        L{exit_after_stop} with status 1.
    @param command: the worker's argv without its id; by default this
        interpreter running L{twisted_lambdagw.daemon.worker_main}.
    """

    def __init__(
        self,
        config: Config,
        options: Mapping[str, object],
        site: IProtocolFactory,
        reactor: Any,
        *,
        endpoint_for: EndpointFor,
        spawner: IReactorProcess | None = None,
        clock: IReactorTime | None = None,
        observer: Observer | None = None,
        policy: RestartPolicy | None = None,
        give_up: Callable[[], None] | None = None,
        command: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
        kill_grace: float = KILL_GRACE,
    ) -> None:
        self.config = config
        self.count = config.gateway.workers
        self.listeners = shared_listeners(config, endpoint_for)
        self._options = plain_options(options)
        self._site = site
        self._reactor: IReactorSocket = reactor
        self._spawner: IReactorProcess = spawner if spawner is not None else reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._observer = observer if observer is not None else globalLogPublisher
        self.log = Logger(observer=cast(ILogObserver, self._observer))
        self._policy = policy or RestartPolicy()
        self._give_up = give_up or (lambda: exit_after_stop(reactor, 1))
        self._command = list(
            command or [sys.executable, "-P", "-m", "twisted_lambdagw.daemon.worker_main"]
        )
        self._environ = dict(os.environ if environ is None else environ)
        self._kill_grace = kill_grace
        self._reactor_module = _reactor_module(reactor)
        self.groups: list[list[socket.socket]] | None = None
        self.ports: list[IListeningPort] = []
        self.workers = {i: _Worker(self, i, self._observer) for i in range(1, self.count)}
        self._stopping = False
        self._gave_up = False
        self._kill_timer: IDelayedCall | None = None
        self._stopped: list[Deferred[None]] = []
        self.exited = WorkersExited(self)

    def privilegedStartService(self) -> None:
        if self.groups is None:
            self._bind()
        super().privilegedStartService()

    def _bind(self) -> None:
        groups: list[list[socket.socket]] = []
        try:
            for listener in self.listeners:
                groups.append(bind_shared(listener, self.count))
        except CannotListenError:
            for group in groups:
                for sock in group:
                    sock.close()
            raise
        self.groups = groups
        for listener, group in zip(self.listeners, groups, strict=True):
            own = group[0]
            port = self._reactor.adoptStreamPort(
                own.fileno(), listener.family, listener.factory(self._site)
            )
            own.close()  # the port holds its own duplicate
            self.ports.append(port)

    def startService(self) -> None:
        if self.groups is None:
            # twist calls only startService.
            self._bind()
        super().startService()
        for worker in self.workers.values():
            self._start(worker)

    def reload(self, config: Config) -> None:
        """
        Hand C{config} to every running worker, and to those started later.
        """
        self.config = config
        self._tell_workers(encode_message(config))

    def reopen_logs(self) -> None:
        """
        Have every running worker reopen its access log.
        """
        self._tell_workers(encode_message(REOPEN))

    def _tell_workers(self, frame: bytes) -> None:
        for worker in self.workers.values():
            if worker.process is not None:
                with contextlib.suppress(OSError, ProcessExitedAlready):
                    worker.process.writeToChild(0, frame)

    def _handoff(self, worker: _Worker) -> tuple[bytes, dict[int, int | str]]:
        assert self.groups is not None
        child_fds: dict[int, int | str] = {0: "w", 1: 1, 2: "r"}
        sockets = []
        for index, (listener, group) in enumerate(zip(self.listeners, self.groups, strict=True)):
            fd = 3 + index
            child_fds[fd] = group[worker.worker_id].fileno()
            sockets.append((fd, int(listener.family)))
        handoff = WorkerHandoff(
            worker.worker_id, self.config, self._options, tuple(sockets), self._reactor_module
        )
        return handoff.encode(), child_fds

    def _start(self, worker: _Worker) -> None:
        worker.restart = None
        if self._stopping or self._gave_up:
            return
        data, child_fds = self._handoff(worker)
        argv = [*self._command, "--worker", str(worker.worker_id)]
        worker.started_at = self._clock.seconds()
        try:
            process = self._spawner.spawnProcess(
                worker, argv[0], argv, env=self._environ, childFDs=child_fds
            )
        except Exception:
            self.log.failure("worker {worker} could not be started", worker=worker.worker_id)
            self._failed(worker, "could not be started")
            return
        worker.process, worker.pid = process, process.pid
        process.writeToChild(0, data)
        self.log.info(
            "started worker {worker} of {count} (pid {pid})",
            worker=worker.worker_id,
            count=self.count,
            pid=worker.pid,
        )

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        status = _exit_status(reason)
        if self._stopping or self._gave_up:
            self.log.info(
                "worker {worker} (pid {pid}) stopped: {status}",
                worker=worker.worker_id,
                pid=worker.pid,
                status=status,
            )
            self._check_stopped()
            return
        self._failed(worker, f"(pid {worker.pid}) exited: {status}")

    def _failed(self, worker: _Worker, what: str) -> None:
        lived = self._clock.seconds() - worker.started_at
        if lived >= self._policy.stable_after:
            worker.fast_failures = 0
        worker.fast_failures += 1
        if worker.fast_failures >= self._policy.max_fast_failures:
            self.log.critical(
                "worker {worker} {what}; it failed {failures} times in a row, each within"
                " {stable:g} s of starting: stopping the gateway",
                worker=worker.worker_id,
                what=what,
                failures=worker.fast_failures,
                stable=self._policy.stable_after,
            )
            self._gave_up = True
            self._give_up()
            return
        delay = self._policy.delay(worker.fast_failures)
        self.log.error(
            "worker {worker} {what}; starting it again in {delay:g} s",
            worker=worker.worker_id,
            what=what,
            delay=delay,
        )
        worker.restart = self._clock.callLater(delay, self._start, worker)

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting, here and in every worker: fires once this process's
        ports are closed, without waiting for the workers (L{exited} does).
        """
        super().stopService()
        self._stop_workers()
        ports, self.ports = self.ports, []
        return stop_listening(ports)

    def _stop_workers(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for worker in self.workers.values():
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
        # Each worker's socket must close when the worker closes it, so that
        # connections stop queueing there while the worker drains.
        for group in self.groups or []:
            for sock in group[1:]:
                sock.close()
        running = [w for w in self.workers.values() if w.running]
        for worker in running:
            worker.signal("TERM")
        if running:
            wait = self.config.gateway.drain_timeout + self._kill_grace
            self._kill_timer = self._clock.callLater(wait, self._kill)

    def when_exited(self) -> Deferred[None]:
        """
        Fires when every worker has exited, telling them to stop if need be.
        """
        self._stop_workers()
        ended: Deferred[None] = Deferred()
        self._stopped.append(ended)
        self._check_stopped()
        return ended

    def _kill(self) -> None:
        late = [w for w in self.workers.values() if w.running]
        for worker in late:
            self.log.warn(
                "worker {worker} (pid {pid}) still running after {wait:g} s: killing it",
                worker=worker.worker_id,
                pid=worker.pid,
                wait=self.config.gateway.drain_timeout + self._kill_grace,
            )
            worker.signal("KILL")
        self._kill_timer = self._clock.callLater(self._kill_grace, self._abandon)

    def _abandon(self) -> None:
        self._kill_timer = None
        for worker in self.workers.values():
            if worker.running:
                self.log.error(
                    "worker {worker} (pid {pid}) did not end after SIGKILL; not waiting for it",
                    worker=worker.worker_id,
                    pid=worker.pid,
                )
                worker.process = None
        self._check_stopped()

    def _check_stopped(self) -> None:
        if not self._stopping or any(w.running for w in self.workers.values()):
            return
        if self._kill_timer is not None and self._kill_timer.active():
            self._kill_timer.cancel()
        self._kill_timer = None
        waiting, self._stopped = self._stopped, []
        for d in waiting:
            d.callback(None)


def _reactor_module(reactor: object) -> str | None:
    """
    The module that installs C{reactor}'s kind, so workers run the same one.
    """
    name = type(reactor).__module__
    module = sys.modules.get(name)
    return name if callable(getattr(module, "install", None)) else None


def listening_service(
    config: Config,
    options: Mapping[str, object],
    site: IProtocolFactory,
    reactor: Any,
    worker: WorkerHandoff | None,
    *,
    endpoint_for: EndpointFor,
) -> WorkerPool | AdoptedListeners:
    """
    The service that listens for a gateway with workers: the parent's pool,
    or, in a worker, the sockets it was handed.
    """
    if worker is not None:
        listeners = shared_listeners(worker.config, endpoint_for)
        return AdoptedListeners(listeners, worker.sockets, site, reactor)
    return WorkerPool(config, options, site, reactor, endpoint_for=endpoint_for)
