"""
The program a worker process runs: C{python -P -m twisted_lambdagw.daemon.worker_main --worker N}.

Only L{twisted_lambdagw.daemon.workers.WorkerPool} starts it.  The worker reads
what to serve from its stdin (a L{twisted_lambdagw.daemon.worker_pipes.WorkerHandoff};
C{--worker N} is only there for C{ps}), builds the same service tree as
the parent through C{tap.makeService}, and serves the sockets it inherited.
Its log events go to its stderr as JSON lines, which the parent re-emits in
its own log; it stops on SIGTERM, or when its stdin closes because the
parent is gone.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone, ReactorNotRunning
from twisted.internet.fdesc import readFromFD, setNonBlocking
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver
from twisted.python.failure import Failure

from twisted_lambdagw._types import IGatewayReactor
from twisted_lambdagw.core.config import Config
from twisted_lambdagw.daemon.worker_pipes import ConfigFrames, WorkerHandoff


class ParentWatch(FileDescriptor):
    """
    Reads a worker's stdin and calls C{gone} when it reaches its end.

    The parent holds the pipe's other end open for the worker's whole life,
    so the end comes when the parent exits, however it exits.  After the
    handoff the parent writes only messages (on SIGHUP): a configuration to
    serve, handed to C{received}, or to reopen the access log (C{reopen}).
    """

    def __init__(
        self,
        reactor: IGatewayReactor,
        fd: int,
        gone: Callable[[], None],
        received: Callable[[Config], None] = lambda config: None,
        reopen: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._gone = gone
        self._frames = ConfigFrames(received, reopen)
        setNonBlocking(fd)

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> object:
        return readFromFD(self._fd, self._frames.feed)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        # The end of the pipe is a clean close (ConnectionDone); the reactor
        # also disconnects every reader when it shuts down, with
        # ConnectionLost, and that is not the parent going away.
        if reason.check(ConnectionDone):
            self._gone()


class StopOnce:
    """
    Stops the reactor the first time it is called; later calls change nothing.

    A worker can be told to stop more than once: SIGTERM from its parent and
    from a supervisor that signals the whole process group or cgroup, or the
    parent's pipe closing while it drains.
    """

    def __init__(self, reactor: IReactorCore, log: Logger, worker_id: int) -> None:
        self._reactor = reactor
        self._log = log
        self._worker_id = worker_id
        self.stopping = False

    def __call__(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._log.info("worker {worker}: {why}; stopping", worker=self._worker_id, why=why)
        with contextlib.suppress(ReactorNotRunning):
            self._reactor.stop()


def log_to_parent(stream: Any) -> None:
    """
    Send this process's log events to its parent, as JSON lines on C{stream}.
    """
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(stream)], redirectStandardIO=False)


def main() -> int:
    """
    Run a worker process until it is stopped; returns its exit status.
    """
    # A SIGHUP sent to the whole process group while this worker starts
    # must not end it; the daemon's own handler (reopen the access log)
    # replaces this once the reactor runs.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        handoff = WorkerHandoff.read(0)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        sys.stderr.write(f"lambdagw worker: no handoff from the parent process: {e}\n")
        return 2
    if handoff.reactor_module is not None:
        with contextlib.suppress(Exception):
            importlib.import_module(handoff.reactor_module).install()
    from twisted.internet import reactor as installed

    from twisted_lambdagw.daemon.lifecycle import DaemonService
    from twisted_lambdagw.daemon.tap import Options, makeService

    reactor = cast(IGatewayReactor, installed)
    log = Logger(namespace="twisted_lambdagw.daemon.workers")
    log_to_parent(sys.stderr)
    options = Options()
    options.update(handoff.options)
    options.config = handoff.config
    try:
        service = cast(DaemonService, makeService(options, reactor, worker=handoff, tune_gc=True))
        service.privilegedStartService()
        service.startService()
    except Exception:
        log.failure("worker {worker} could not start", worker=handoff.worker_id)
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    stop = StopOnce(reactor, log, handoff.worker_id)

    def handle_signals() -> None:
        # After the reactor installed its own handlers, which would complain
        # about a second SIGTERM.  The parent stops its workers, so a Ctrl-C
        # that reaches the whole process group is left to it.
        signal.signal(signal.SIGTERM, lambda n, f: reactor.callFromThread(stop, "received SIGTERM"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    reloader = service.reloader
    assert reloader is not None

    def received(config: Config) -> None:
        log.info("worker {worker}: reloading as the parent did", worker=handoff.worker_id)
        reloader.apply(config)

    gone = lambda: stop("the parent process is gone")  # noqa: E731
    ParentWatch(reactor, 0, gone, received, service.reopen).startReading()
    reactor.callWhenRunning(handle_signals)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
