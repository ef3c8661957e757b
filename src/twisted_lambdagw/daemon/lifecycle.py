"""
Starting and stopping the gateway in the right order.

A gateway that is told to stop must not drop the requests it is serving:
it stops accepting connections, lets the requests under way finish (for at
most C{drain_timeout}), and only then closes its upstream connection pool.
L{SequentialService} runs its children's stops one after the other, last
child first, so that order is just the order the children were added in;
L{DrainService} is the step that waits.

L{DaemonService} is the top of the C{twistd}/C{twist} service tree only (an
application embedding the gateway keeps its own signal handling): it makes
SIGTERM a normal, drained stop that exits 0, and turns a startup failure
(port taken, log file not writable) into one line on stderr.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn, Protocol

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_lambdagw._types import IGatewayReactor
from twisted_lambdagw.core.config import Config, ConfigError


class Drainable(Protocol):
    """
    What L{DrainService} drains: the gateway resource.
    """

    draining: bool
    active: int

    def when_idle(self) -> Deferred[None]: ...


class ConfigApplier(Protocol):
    """
    What serves a configuration read elsewhere: a worker's
    L{twisted_lambdagw.daemon.reload.Reloader}, fed by its parent.
    """

    def apply(self, config: Config) -> Deferred[bool]: ...


class SequentialService(MultiService):
    """
    A MultiService whose children stop one at a time, last added first.

    Twisted's MultiService starts every child's stop at once; here a child
    is stopped only once the one added after it has finished stopping.
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        remaining = list(self)

        async def stop_in_turn() -> None:
            while remaining:
                child = remaining.pop()
                stopped = child.stopService()
                if stopped is not None:
                    await stopped

        return Deferred.fromCoroutine(stop_in_turn())


class DrainService(Service):
    """
    On stop: mark the resource draining and wait until it is idle, or until
    C{timeout} seconds have passed on C{clock}.

    While draining, health checks answer 503 and every response closes its
    connection.  Requests still under way when the time is up are logged
    and left to be cut off when the process exits.
    """

    log = Logger()

    def __init__(self, resource: Drainable, clock: IReactorTime, timeout: float) -> None:
        self.resource = resource
        self.clock = clock
        self.timeout = timeout

    def startService(self) -> None:
        super().startService()
        self.resource.draining = False

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.resource.draining = True
        if self.resource.active == 0:
            return succeed(None)
        self.log.info(
            "draining: waiting for {active} request(s), at most {timeout}s",
            active=self.resource.active,
            timeout=self.timeout,
        )
        idle = self.resource.when_idle()
        idle.addTimeout(self.timeout, self.clock)

        def gave_up(failure: Failure) -> None:
            failure.trap(TimeoutError)
            self.log.warn(
                "drain_timeout ({timeout}s) passed with {active} request(s) still under way",
                timeout=self.timeout,
                active=self.resource.active,
            )

        def drained(result: None) -> None:
            self.log.info("drained: no request under way")

        idle.addCallbacks(drained, gave_up)
        return idle


class StartupFailed(SystemExit, Exception):
    """
    Startup cannot go on: the message is the one line the operator sees.

    It is a SystemExit, so that in the foreground (C{twistd -n}, C{twist})
    Python prints just the message and exits 1, without a traceback.  It is
    also an Exception, so that a daemonizing twistd reports it to the
    waiting parent (through its status pipe) instead of leaving it waiting.
    """


SignalInstaller = Callable[[int, Callable[[int, FrameType | None], None]], object]


class DaemonService(MultiService):
    """
    The top of the daemon's service tree.

    Starting it turns a listen failure or a config problem found only at
    start (an access log that cannot be opened) into L{StartupFailed}: one
    line on stderr and exit status 1, instead of a traceback.

    Once the reactor runs, SIGTERM is handled here rather than by the
    reactor: the reactor's own handler makes twistd and twist end by
    re-raising the signal, so a supervisor would see "killed by SIGTERM"
    even after a clean drain.  Here SIGTERM stops the reactor as a normal
    stop does: the services stop (listeners first, then the drain, then the
    pool), and the process exits 0.

    SIGHUP calls C{reopen}, when given: the gateway reloads its config
    (L{twisted_lambdagw.daemon.reload}) and reopens the access log after rotation.

    @ivar reloader: what applies a new configuration in this process (the
        daemon's L{twisted_lambdagw.daemon.reload.Reloader}); a worker hands it
        what its parent sends.

    @param install_signal: C{signal.signal}, or a fake in tests.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IGatewayReactor,
        *,
        reopen: Callable[[], object] | None = None,
        install_signal: SignalInstaller = signal.signal,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._reopen = reopen
        self._install_signal = install_signal
        self._stopping = False
        self.reloader: ConfigApplier | None = None

    def privilegedStartService(self) -> None:
        with one_line_failures():
            super().privilegedStartService()

    def startService(self) -> None:
        with one_line_failures():
            super().startService()
        self._reactor.callWhenRunning(self._take_sigterm)

    def _take_sigterm(self) -> None:
        # After the reactor has installed its handlers, which it does while
        # starting to run.
        self._install_signal(signal.SIGTERM, self._sigterm)
        if self._reopen is not None:
            self._install_signal(signal.SIGHUP, self._sighup)
        self.log.info("ready; SIGTERM stops gracefully")

    def reopen(self) -> None:
        """
        Do what SIGHUP does here, if anything (a worker: reopen its access log).
        """
        if self._reopen is not None:
            self._reopen()

    def _sighup(self, number: int, frame: FrameType | None) -> None:
        assert self._reopen is not None
        self._reactor.callFromThread(self._reopen)

    def _sigterm(self, number: int, frame: FrameType | None) -> None:
        # A signal handler: hand over to the reactor thread.
        self._reactor.callFromThread(self._stop)

    def _stop(self) -> None:
        if self._stopping:
            self.log.info("received SIGTERM again; already stopping")
            return
        self._stopping = True
        self.log.info("received SIGTERM: stopping gracefully")
        self._reactor.stop()


@contextmanager
def one_line_failures() -> Iterator[None]:
    """
    Turns the expected startup failures into L{StartupFailed}.
    """
    try:
        yield
    except CannotListenError as error:
        fail(f"lambdagw: {' '.join(str(error).split())}")
    except ConfigError as error:
        fail(f"lambdagw: {error}")


def fail(message: str) -> NoReturn:
    # Under twistd, stderr is the log by now: the line lands there too.
    raise StartupFailed(message) from None
