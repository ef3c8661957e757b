"""
One worker: a runtime process and the Runtime API address it talks to.

The worker listens on its own loopback port, so every request on it comes
from its own runtime, and starts the runtime with ``reactor.spawnProcess``
(never blocking the reactor).  It enforces the invocation deadline by
killing the process, turns a dead process or an init error into a failed
invocation, and sends every line the process prints to the gateway log,
tagged with the function and the request being handled.

A worker is used once per process lifetime: after a kill, an exit or an init
error it is not ``reusable`` and the pool starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ProcessProtocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request
from twisted.web.server import Site

from twisted_lambdagw.core.errors import InvokeFailed, InvokeTimeout

from .runtime_api import Invocation, Outcome, RuntimeAPI, RuntimeRequest

MAX_LINE = 64 * 1024
"""Output without a newline is logged in pieces of this many bytes."""

INIT_TIMEOUT = 10.0
"""Seconds a runtime may take to start and ask for its first event, as in Lambda."""

STREAM_DEADLINE = 900.0
"""
Seconds a streamed response may run once it has started: Lambda's longest
function timeout.  The caller's deadline bounds the wait for it to start;
the gateway's ``stream_idle_timeout`` bounds each gap after that.
"""


class LocalReactor(IReactorTCP, IReactorProcess, IReactorTime):
    """
    What the local backend needs from a reactor: listen, spawn, keep time.
    """


class _RuntimeChannel(HTTPChannel):
    """
    An HTTP connection from a runtime, with Nagle's algorithm off.

    The runtime and the gateway exchange small messages in lock step, where
    Nagle's algorithm plus delayed ACKs would add tens of milliseconds.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        cast(ITCPTransport, self.transport).setTcpNoDelay(True)
        cast(_RuntimeSite, self.factory).channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        cast(_RuntimeSite, self.factory).channels.discard(self)
        super().connectionLost(reason)


class _RuntimeSite(Site):
    """
    The Runtime API server of one worker: no access log, no idle timeout.

    A runtime's poll may wait as long as the worker is idle, and two access
    log lines per invocation would only bury the function's own output.
    Posted bodies are results, never form submissions, so they are not
    parsed as forms.
    """

    protocol = _RuntimeChannel  # type: ignore[assignment]
    requestFactory = RuntimeRequest

    def __init__(self, api: RuntimeAPI, reactor: IReactorTime, function: str) -> None:
        super().__init__(api, timeout=None, reactor=reactor, parsePOSTFormSubmission=False)
        self.channels: set[_RuntimeChannel] = set()
        self.noisy = False
        self.function = function

    def logPrefix(self) -> str:
        return f"Runtime API of {self.function}"

    def startFactory(self) -> None:
        """No access log file and no clock for its timestamps."""

    def log(self, request: Request) -> None:
        """No access log."""


class Worker:
    """
    A runtime process running one function, and its Runtime API.

    ``on_exit`` is called once the process has gone, whatever the reason.
    """

    log = Logger()

    def __init__(
        self,
        reactor: LocalReactor,
        executable: str,
        args: list[str],
        environ: Mapping[str, str],
        cwd: str,
        function: str,
        on_exit: Callable[[Worker], None],
        kill_grace: float = 2.0,
        init_timeout: float = INIT_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self._executable = executable
        self._args = args
        self._environ = dict(environ)
        self._cwd = cwd
        self.function = function
        self._on_exit = on_exit
        self._kill_grace = kill_grace
        self._init_timeout = init_timeout
        self.api = RuntimeAPI(
            on_init_error=self._init_failed,
            on_initialized=self._initialized,
            on_stream_started=self._stream_started,
        )
        self.reusable = True
        """False once the worker must not get another invocation."""
        self.pid: int | None = None
        self._port: IListeningPort | None = None
        self._site = _RuntimeSite(self.api, reactor, function)
        self._process: IProcessTransport | None = None
        self._running = False
        self._stopping = False
        self._timed_out = False
        self._init_error: str | None = None
        self._current: Invocation | None = None
        self._last: Invocation | None = None
        self._output = _RuntimeProcess(self)
        self._withdrawn = False
        self._init_timer: IDelayedCall | None = None
        self._killer: IDelayedCall | None = None
        self._end_timer: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._closed = False
        self._done = False
        self._closed_waiters: list[Deferred[None]] = []

    def start(self) -> None:
        """
        Listen on a fresh loopback port and start the runtime process.
        """
        self._port = self._reactor.listenTCP(
            0,
            self._site,  # type: ignore[arg-type]
            interface="127.0.0.1",
        )
        host = self._port.getHost()
        assert isinstance(host, IPv4Address)
        address = f"127.0.0.1:{host.port}"
        env = {
            **self._environ,
            "AWS_LAMBDA_RUNTIME_API": address,
            "AWS_LAMBDA_LOG_STREAM_NAME": self._log_stream_name(),
        }
        try:
            self._process = self._reactor.spawnProcess(
                self._output, self._executable, self._args, env, path=self._cwd
            )
        except Exception:
            self.reusable = False
            self._close()
            raise
        self._running = True
        self.pid = self._process.pid
        self._process.closeStdin()
        self._init_timer = self._reactor.callLater(self._init_timeout, self._init_timed_out)
        self.log.info(
            "[{function}] started worker {pid} (cold start), Runtime API on {address}",
            pid=self.pid,
            function=self.function,
            address=address,
        )

    def run(self, invocation: Invocation, deadline: float) -> Deferred[Outcome]:
        """
        Run one invocation, which must be done by ``deadline``.

        At the deadline a runtime that has the event is killed; one that is
        still starting loses the event but goes on starting, so that a slow
        cold start is not repeated on every call.
        """
        self._current = self._last = invocation
        done = self.api.submit(invocation)
        delay = max(0.0, deadline - self._reactor.seconds())
        timer = self._deadline = self._reactor.callLater(delay, self._deadline_passed, invocation)

        def finished(result: Outcome | Failure) -> Outcome | Failure:
            if timer.active():
                timer.cancel()
            self._drain_output()
            self._current = None
            if isinstance(result, Outcome):
                self.reusable = self.reusable and result.reusable
            elif not self._withdrawn:
                self.reusable = False
            self._withdrawn = False
            return result

        return done.addBoth(finished)

    def withdraw(self) -> bool:
        """
        Take back the current event if the runtime has not received it yet.
        """
        return self._take_back(None)

    def _take_back(self, reason: Exception | None) -> bool:
        if not self.api.undelivered:
            return False
        self._withdrawn = True
        return self.api.withdraw(reason)

    def stop(self) -> Deferred[None]:
        """
        Stop the process (TERM, then KILL after a grace period) and the listener.

        The Deferred fires once both are gone; calling again is harmless.
        """
        self.reusable = False
        self._stopping = True
        if self._running:
            self._signal("TERM")
            if self._killer is None:
                self._killer = self._reactor.callLater(self._kill_grace, self._signal, "KILL")
        elif self._process is None:
            self._close()
        waiter: Deferred[None] = Deferred()
        if self._done:
            waiter.callback(None)
        else:
            self._closed_waiters.append(waiter)
        return waiter

    def _drain_output(self) -> None:
        """
        Read what the runtime printed before it answered.

        The runtime writes its output before it posts the result, but the
        reactor may see the post first; reading the pipes now, before the
        invocation is over, tags those lines with the right request id.
        """
        pipes = getattr(self._process, "pipes", None)
        if not isinstance(pipes, dict):
            return
        for fd in (1, 2):
            reader = pipes.get(fd)
            for _ in range(128):
                before = self._output.received
                if reader is None or reader.doRead() is not None:
                    break
                if self._output.received == before:
                    break

    def _signal(self, name: str) -> None:
        if self._running and self._process is not None:
            with contextlib.suppress(OSError, ProcessExitedAlready):
                self._process.signalProcess(name)

    def _deadline_passed(self, invocation: Invocation) -> None:
        fields = {
            "function": self.function,
            "request_id": invocation.gateway_request_id,
            "aws_request_id": invocation.request_id,
            "pid": self.pid,
        }
        starting = InvokeTimeout(detail=f"{self.function} was still starting at the deadline")
        if self._take_back(starting):
            self.log.info(
                "[{function}] [{request_id}] deadline passed during a cold start", **fields
            )
            return
        self._timed_out = True
        self.reusable = False
        self.log.info("[{function}] [{request_id}] deadline passed: killing worker {pid}", **fields)
        self.api.fail(InvokeTimeout(detail=f"{self.function} did not answer by its deadline"))
        self._signal("KILL")

    def _stream_started(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(STREAM_DEADLINE)

    def _initialized(self) -> None:
        if self._init_timer is not None and self._init_timer.active():
            self._init_timer.cancel()

    def _init_timed_out(self) -> None:
        self._init_error = "init timeout"
        self.reusable = False
        self.log.error(
            "[{function}] init error: no first poll within {seconds}s; killing worker {pid}",
            function=self.function,
            seconds=self._init_timeout,
            pid=self.pid,
        )
        self.api.fail(
            InvokeFailed(detail=f"{self.function} did not start within {self._init_timeout}s")
        )
        self._signal("KILL")

    def _init_failed(self, body: bytes, error_type: str | None) -> None:
        error = _error_document(body)
        error_type = str(error.get("errorType") or error_type or "")
        message = str(error.get("errorMessage") or "")
        self._init_error = f"{error_type}: {message}"
        self.reusable = False
        self.log.error(
            "[{function}] init error: {error_type}: {error_message}",
            function=self.function,
            error_type=error_type,
            error_message=message,
            stack_trace=error.get("stackTrace"),
            pid=self.pid,
        )
        self.api.fail(InvokeFailed(detail=f"{self.function} failed to initialize: {error_type}"))
        self.stop()

    def output(self, stream: str, line: bytes) -> None:
        """
        One line the process printed, for the gateway log.
        """
        current = self._current or self._last
        self.log.info(
            "[{function}] [{request_id}] {line}",
            function=self.function,
            request_id=current.gateway_request_id if current else "init",
            aws_request_id=current.request_id if current else None,
            stream=stream,
            line=line.decode("utf-8", "replace").replace("\r", "\n").rstrip(),
            pid=self.pid,
        )

    def exited(self, reason: Failure) -> None:
        """
        The process is gone; the invocation it had, if any, failed.
        """
        self._running = False
        self.reusable = False
        status = _exit_status(reason)
        expected = self._stopping or self._timed_out or self._init_error is not None
        if not expected:
            current = self._current
            self.log.warn(
                "[{function}] [{request_id}] worker {pid} exited ({status})",
                function=self.function,
                request_id=current.gateway_request_id if current else "-",
                pid=self.pid,
                status=status,
            )
        detail = f"the runtime of {self.function} exited ({status})"
        self.api.fail(InvokeFailed(detail=detail))
        self._on_exit(self)
        # Pipes inherited by the runtime's own children could keep the
        # process from ending; they are no concern of the gateway's.
        self._end_timer = self._reactor.callLater(1.0, self._close_pipes)

    def _close_pipes(self) -> None:
        if self._process is not None:
            self._process.loseConnection()

    def ended(self) -> None:
        """
        The process is gone and its output read: close the listener.
        """
        for call in (self._init_timer, self._killer, self._end_timer):
            if call is not None and call.active():
                call.cancel()
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for channel in list(self._site.channels):
            cast(ITCPTransport, channel.transport).abortConnection()
        stopping = self._port.stopListening() if self._port is not None else None
        if isinstance(stopping, Deferred):
            stopping.addBoth(lambda _: self._release_waiters())
        else:
            self._release_waiters()

    def _release_waiters(self) -> None:
        self._done = True
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _log_stream_name(self) -> str:
        day = time.strftime("%Y/%m/%d", time.gmtime(self._reactor.seconds()))
        version = self._environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        return f"{day}/[{version}]{secrets.token_hex(16)}"


class _RuntimeProcess(ProcessProtocol):
    """
    Splits the runtime's stdout and stderr into lines for its worker.
    """

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._buffers: dict[int, bytes] = {1: b"", 2: b""}
        self.received = 0

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.received += len(data)
        buffer = self._buffers.get(childFD, b"") + data
        *lines, rest = buffer.split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._buffers[childFD] = rest
        stream = "stderr" if childFD == 2 else "stdout"
        for line in lines:
            self._worker.output(stream, line)

    def processExited(self, reason: Failure) -> None:
        self._worker.exited(reason)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in sorted(self._buffers.items()):
            if rest:
                self._worker.output("stderr" if fd == 2 else "stdout", rest)
        self._buffers.clear()
        self._worker.ended()


def _exit_status(reason: Failure) -> str:
    signal = getattr(reason.value, "signal", None)
    if signal is not None:
        return f"killed by signal {signal}"
    return f"exit status {getattr(reason.value, 'exitCode', None)}"


def _error_document(body: bytes) -> dict[str, object]:
    try:
        document = json.loads(body)
    except ValueError:
        return {"errorMessage": body.decode("utf-8", "replace")}
    return document if isinstance(document, dict) else {"errorMessage": str(document)}
