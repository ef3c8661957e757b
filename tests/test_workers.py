"""
The parent's side of ``workers = N`` without real workers: a fake process
spawner, a memory reactor with a clock, and real sockets on loopback.

Also the pieces a worker process runs (the handoff, the log relay, the
parent watch), each on its own, and the plugin's service tree with workers.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, AnyStr, cast

from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    CannotListenError,
    ConnectionLost,
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
    ReactorNotRunning,
)
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    jsonFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from tests.typed import as_reactor
from twisted_lambdagw.core.config import Config
from twisted_lambdagw.daemon.listen import server_endpoint
from twisted_lambdagw.daemon.reuseport import AdoptedListeners
from twisted_lambdagw.daemon.tap import Options, makeService
from twisted_lambdagw.daemon.worker_main import ParentWatch, StopOnce
from twisted_lambdagw.daemon.worker_pipes import (
    MAX_LINE,
    ConfigFrames,
    LogRelay,
    WorkerHandoff,
    plain_options,
)
from twisted_lambdagw.daemon.workers import RestartPolicy, WorkerPool

from .gateway_fixtures import FakeAWSGateway, config_from
from .process_fixtures import child_environment, temp_dir, write_config

ROUTES = """
[aws]
region = us-west-2
access_key_id = AKIDEXAMPLEFAKEKEY01
secret_access_key = fake-secret-for-tests-only
endpoint_url = http://127.0.0.1:1

[route:/lambda/]
qualifier = prod
include = hello* api-*
header_upstream = X-Real-IP {remote}

[route:/one/]
single = special-fn
"""


def gateway_config(*listen: str, workers: int = 3, drain: str = "2s") -> Config:
    lines = "\n         ".join(listen or ("tcp:0:interface=127.0.0.1",))
    return config_from(
        f"[gateway]\nlisten = {lines}\nworkers = {workers}\ndrain_timeout = {drain}\n" + ROUTES
    )


@implementer(IProcessTransport)
class FakeProcess:
    """
    A started worker as the parent sees it: what it was given, the signals it got.
    """

    def __init__(
        self,
        protocol: IProcessProtocol,
        argv: Sequence[str],
        env: Mapping[str, str],
        child_fds: Mapping[int, int | str],
        pid: int,
    ) -> None:
        self.protocol = protocol
        self.argv = list(argv)
        self.env = dict(env)
        self.child_fds = dict(child_fds)
        self.pid = pid
        self.written = b""
        self.signals: list[str] = []
        self.ended = False

    def writeToChild(self, childFD: int, data: bytes) -> None:
        assert childFD == 0
        self.written += data

    def signalProcess(self, signalID: str | int) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(str(signalID))

    def end(self, exit_code: int = 0, signal: int | None = None) -> None:
        """
        The process exits (or is killed by C{signal}) and its pipes close.
        """
        self.ended = True
        if exit_code == 0 and signal is None:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(exit_code if signal is None else None, signal))
        self.protocol.processEnded(reason)

    def handoff(self) -> WorkerHandoff:
        """
        What the parent wrote to the worker's stdin, read as the worker reads it.
        """
        read, write = os.pipe()
        try:
            os.write(write, self.written)
            os.close(write)
            return WorkerHandoff.read(read)
        finally:
            os.close(read)

    # The rest of IProcessTransport, unused by the pool.
    def closeStdin(self) -> None: ...
    def closeStdout(self) -> None: ...
    def closeStderr(self) -> None: ...
    def closeChildFD(self, descriptor: int) -> None: ...
    def loseConnection(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def writeSequence(self, data: Any) -> None: ...
    def getPeer(self) -> Any: ...
    def getHost(self) -> Any: ...


@implementer(IReactorProcess)
class FakeSpawner:
    """
    Records every process the pool starts; can be told to fail the next start.
    """

    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.fail_next: Exception | None = None

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> IProcessTransport:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        assert executable == args[0]
        process = FakeProcess(
            processProtocol,
            [str(arg) for arg in args],
            {str(k): str(v) for k, v in (env or {}).items()},
            childFDs or {},
            pid=1000 + len(self.processes),
        )
        processProtocol.makeConnection(process)
        self.processes.append(process)
        return process

    def of(self, worker_id: int) -> list[FakeProcess]:
        """
        The processes started for one worker id, oldest first.
        """
        return [p for p in self.processes if p.argv[-1] == str(worker_id)]


class StoppablePort:
    """
    A listening port that says whether it was stopped.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stopped = False

    def stopListening(self) -> Deferred[None]:
        self.stopped = True
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class RecordingReactor(MemoryReactorClock):
    """
    A memory reactor whose adopted ports record being stopped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[StoppablePort] = []

    def adoptStreamPort(self, fileno: int, addressFamily: Any, factory: Any) -> Any:
        super().adoptStreamPort(fileno, addressFamily, factory)
        port = StoppablePort(fileno)
        self.ports.append(port)
        return port


class PoolHarness:
    """
    A real WorkerPool with fake processes, a fake clock and captured log events.
    """

    def __init__(self, case: SynchronousTestCase, config: Config) -> None:
        self.reactor = RecordingReactor()
        self.spawner = FakeSpawner()
        self.events: list[LogEvent] = []
        self.gave_up: list[bool] = []
        self.site = Site(Resource())
        self.pool = WorkerPool(
            config,
            {"config": "gw.ini", "listen": ["tcp:0"], "reactor": object()},
            self.site,
            self.reactor,
            endpoint_for=server_endpoint,
            spawner=self.spawner,
            observer=self.events.append,
            give_up=lambda: self.gave_up.append(True),
            command=["/usr/bin/python3", "-m", "worker"],
            environ={"HOME": "/home/gw"},
        )
        case.addCleanup(self.close)

    def close(self) -> None:
        for group in self.pool.groups or []:
            for sock in group:
                sock.close()

    def messages(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def start(self) -> None:
        self.pool.privilegedStartService()
        self.pool.startService()

    def stop(self) -> Deferred[None]:
        """
        Stop as the plugin's service tree does: the pool first, its C{exited} last.
        """
        listening = self.pool.stopService()
        assert listening.called
        return self.pool.exited.stopService()


class WorkerPoolStartTests(SynchronousTestCase):
    """
    Starting: the sockets are bound once, the parent serves one of each, workers get the rest.
    """

    def test_bind_and_adopt(self) -> None:
        """
        The privileged start binds N sockets per line and serves the first of each itself.
        """
        harness = PoolHarness(
            self, gateway_config("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1")
        )
        harness.pool.privilegedStartService()
        groups = harness.pool.groups
        assert groups is not None
        self.assertEqual([len(group) for group in groups], [3, 3])
        for group in groups:
            self.assertEqual(len({sock.getsockname() for sock in group[1:]}), 1)
            # The parent's own socket is adopted (the port holds a duplicate)
            # and closed here.
            self.assertEqual(group[0].fileno(), -1)
        self.assertNotEqual(groups[0][1].getsockname(), groups[1][1].getsockname())
        self.assertEqual(
            [(family, factory) for _, family, factory in harness.reactor.adoptedPorts],
            [(socket.AF_INET, harness.site)] * 2,
        )
        self.assertEqual(harness.spawner.processes, [])

    def test_workers_started(self) -> None:
        """
        Workers 1..N-1 start with their own sockets, the environment, and a handoff on stdin.
        """
        config = gateway_config("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1")
        harness = PoolHarness(self, config)
        harness.start()
        groups = harness.pool.groups
        assert groups is not None
        self.assertEqual(len(harness.spawner.processes), 2)
        for worker_id in 1, 2:
            [process] = harness.spawner.of(worker_id)
            self.assertEqual(
                process.argv, ["/usr/bin/python3", "-m", "worker", "--worker", str(worker_id)]
            )
            self.assertEqual(process.env, {"HOME": "/home/gw"})
            self.assertEqual(
                process.child_fds,
                {
                    0: "w",
                    1: 1,
                    2: "r",
                    3: groups[0][worker_id].fileno(),
                    4: groups[1][worker_id].fileno(),
                },
            )
            handoff = process.handoff()
            self.assertEqual(handoff.worker_id, worker_id)
            self.assertEqual(handoff.config, config)
            self.assertEqual(handoff.sockets, ((3, socket.AF_INET), (4, socket.AF_INET)))
            # Plain option values travel; objects do not.
            self.assertEqual(handoff.options, {"config": "gw.ini", "listen": ["tcp:0"]})
        self.assertIn("started worker 2 of 3 (pid 1001)", harness.messages())

    def test_reload_reaches_every_worker(self) -> None:
        """
        A reloaded config, and the order to reopen the access log, are
        written to every running worker's pipe after its handoff, in frames
        a worker reads whole however they arrive; a worker started later is
        handed that config, not the one of startup.
        """
        harness = PoolHarness(self, gateway_config(workers=3))
        harness.start()
        handed = [len(p.written) for p in harness.spawner.processes]
        new = gateway_config(workers=3, drain="7s")
        harness.pool.reopen_logs()
        harness.pool.reload(new)
        for process, start in zip(harness.spawner.processes, handed, strict=True):
            received: list[object] = []
            frames = ConfigFrames(received.append, partial(received.append, "reopened"))
            sent = process.written[start:]
            for at in range(len(sent)):
                frames.feed(sent[at : at + 1])
            self.assertEqual(received, ["reopened", new])
            self.assertEqual(process.signals, [])
        harness.spawner.processes[0].end(1)
        harness.reactor.advance(RestartPolicy().first_delay)
        self.assertEqual(harness.spawner.processes[-1].handoff().config, new)

    def test_start_without_privileged_start(self) -> None:
        """
        twist calls only startService: the sockets are bound then.
        """
        harness = PoolHarness(self, gateway_config(workers=2))
        harness.pool.startService()
        self.assertEqual(len(harness.reactor.adoptedPorts), 1)
        self.assertEqual(len(harness.spawner.processes), 1)

    def test_port_taken(self) -> None:
        """
        A taken port fails the start, leaves nothing open and starts no worker.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        harness = PoolHarness(
            self,
            gateway_config("tcp:0:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"),
        )
        before = len(os.listdir("/proc/self/fd"))
        with self.assertRaises(CannotListenError) as caught:
            harness.pool.privilegedStartService()
        self.assertIn(f"127.0.0.1:{port}", str(caught.exception))
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)
        self.assertIsNone(harness.pool.groups)
        self.assertEqual(harness.reactor.adoptedPorts, [])
        self.assertEqual(harness.spawner.processes, [])


class WorkerPoolRestartTests(SynchronousTestCase):
    """
    A worker that exits is started again, later each time, until the gateway gives up.
    """

    def setUp(self) -> None:
        self.harness = PoolHarness(self, gateway_config(workers=2))
        self.harness.start()
        self.clock = self.harness.reactor
        self.spawner = self.harness.spawner

    def fail_fast(self) -> FakeProcess:
        """
        The newest worker 1 exits with status 1 at once.
        """
        process = self.spawner.of(1)[-1]
        process.end(1)
        return process

    def test_restarted(self) -> None:
        """
        An exit is logged and, after the first delay, the same sockets go to a new process.
        """
        self.clock.advance(60)
        first = self.spawner.of(1)[0]
        first.end(3)
        self.assertIn(
            "worker 1 (pid 1000) exited: exit status 3; starting it again in 0.5 s",
            self.harness.messages(),
        )
        [error] = [e for e in self.harness.events if e["log_level"] is LogLevel.error]
        self.assertEqual(error["worker"], 1)
        self.clock.advance(0.49)
        self.assertEqual(len(self.spawner.of(1)), 1)
        self.clock.advance(0.01)
        [_, second] = self.spawner.of(1)
        self.assertEqual(second.child_fds, first.child_fds)
        self.assertEqual(second.handoff(), first.handoff())

    def test_killed_by_signal(self) -> None:
        """
        A worker killed by a signal is named so in the log, and restarted.
        """
        self.clock.advance(60)
        self.spawner.of(1)[0].end(signal=9)
        self.assertIn(
            "worker 1 (pid 1000) exited: killed by SIGKILL; starting it again in 0.5 s",
            self.harness.messages(),
        )
        self.clock.advance(0.5)
        self.assertEqual(len(self.spawner.of(1)), 2)

    def test_backoff_then_give_up(self) -> None:
        """
        Fast failures double the delay (0.5, 1, 2, 4 s); the fifth in a row gives up, once.
        """
        for delay in 0.5, 1.0, 2.0, 4.0:
            self.fail_fast()
            starts = len(self.spawner.of(1))
            self.clock.advance(delay - 0.01)
            self.assertEqual(len(self.spawner.of(1)), starts)
            self.clock.advance(0.01)
            self.assertEqual(len(self.spawner.of(1)), starts + 1)
        self.assertEqual(self.harness.gave_up, [])
        self.fail_fast()
        self.assertEqual(self.harness.gave_up, [True])
        critical = [e for e in self.harness.events if e["log_level"] is LogLevel.critical]
        self.assertEqual(len(critical), 1)
        self.assertIn("failed 5 times in a row", formatEvent(critical[0]))
        self.clock.advance(3600)
        self.assertEqual(len(self.spawner.of(1)), 5)

    def test_stable_run_resets(self) -> None:
        """
        A worker that ran past stable_after starts again after the first delay.
        """
        for delay in 0.5, 1.0, 2.0:
            self.fail_fast()
            self.clock.advance(delay)
        self.clock.advance(RestartPolicy().stable_after)
        self.fail_fast()
        self.assertIn("starting it again in 0.5 s", self.harness.messages()[-1])

    def test_spawn_error(self) -> None:
        """
        A worker that cannot be started counts as a failure and is tried again.
        """
        self.clock.advance(60)
        self.spawner.fail_next = OSError("no such interpreter")
        self.spawner.of(1)[0].end(1)
        self.clock.advance(0.5)
        self.assertIn(
            "worker 1 could not be started; starting it again in 1 s", self.harness.messages()
        )
        [failure] = [e for e in self.harness.events if "log_failure" in e]
        self.assertIsInstance(failure["log_failure"].value, OSError)
        self.clock.advance(0.99)
        self.assertEqual(len(self.spawner.of(1)), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.spawner.of(1)), 2)


class WorkerPoolStopTests(SynchronousTestCase):
    """
    Stopping: workers are told to drain, waited for, and killed when late.
    """

    def setUp(self) -> None:
        self.harness = PoolHarness(self, gateway_config(workers=3, drain="2s"))
        self.harness.start()
        self.clock = self.harness.reactor
        self.processes = list(self.harness.spawner.processes)

    def test_stop(self) -> None:
        """
        SIGTERM to every worker, the worker sockets closed here, done when all have exited.
        """
        stopped = self.harness.stop()
        self.assertNoResult(stopped)
        self.assertEqual([p.signals for p in self.processes], [["TERM"], ["TERM"]])
        [group] = self.harness.pool.groups or []
        self.assertEqual([sock.fileno() for sock in group], [-1, -1, -1])
        self.assertEqual([port.stopped for port in self.harness.reactor.ports], [True])
        self.processes[0].end()
        self.assertNoResult(stopped)
        self.processes[1].end(signal=15)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIn("worker 1 (pid 1000) stopped: exit status 0", self.harness.messages())
        self.assertIn("worker 2 (pid 1001) stopped: killed by SIGTERM", self.harness.messages())
        self.clock.advance(3600)
        self.assertEqual(len(self.harness.spawner.processes), 2)

    def test_stop_listening_first(self) -> None:
        """
        Stopping the pool does not wait for the workers; its exited service does.
        """
        listening = self.harness.pool.stopService()
        self.successResultOf(listening)
        self.assertEqual([p.signals for p in self.processes], [["TERM"], ["TERM"]])
        exited = self.harness.pool.exited.stopService()
        self.assertNoResult(exited)
        for process in self.processes:
            process.end()
        self.successResultOf(exited)
        # Told twice, the workers were signalled once.
        self.assertEqual([p.signals for p in self.processes], [["TERM"], ["TERM"]])

    def test_exited_alone(self) -> None:
        """
        Waiting for the workers tells them to stop if nothing else did.
        """
        exited = self.harness.pool.exited.stopService()
        self.assertEqual([p.signals for p in self.processes], [["TERM"], ["TERM"]])
        for process in self.processes:
            process.end()
        self.successResultOf(exited)

    def test_kill_when_late(self) -> None:
        """
        A worker still running drain_timeout + 5 s after SIGTERM gets SIGKILL.
        """
        stopped = self.harness.stop()
        self.processes[0].end()
        self.clock.advance(2 + 5 - 0.01)
        self.assertEqual(self.processes[1].signals, ["TERM"])
        self.clock.advance(0.01)
        self.assertEqual(self.processes[1].signals, ["TERM", "KILL"])
        self.assertNoResult(stopped)
        self.processes[1].end(signal=9)
        self.successResultOf(stopped)

    def test_abandon_after_kill(self) -> None:
        """
        A worker that does not end even after SIGKILL is not waited for forever.
        """
        stopped = self.harness.stop()
        for process in self.processes:
            process.end()
        self.successResultOf(stopped)
        harness = PoolHarness(self, gateway_config(workers=2, drain="1s"))
        harness.start()
        stopped = harness.stop()
        harness.reactor.advance(1 + 5)
        harness.reactor.advance(5)
        self.successResultOf(stopped)
        self.assertIn(
            "worker 1 (pid 1000) did not end after SIGKILL; not waiting for it",
            harness.messages(),
        )

    def test_pending_restart_cancelled(self) -> None:
        """
        A worker waiting to be restarted is not started once the pool stops.
        """
        self.clock.advance(60)
        self.processes[0].end(1)
        stopped = self.harness.stop()
        self.assertEqual(self.processes[1].signals, ["TERM"])
        self.processes[1].end()
        self.successResultOf(stopped)
        self.clock.advance(3600)
        self.assertEqual(len(self.harness.spawner.processes), 2)


def child_events(write: Any) -> None:
    """
    Log what a worker typically logs, through the observer a worker uses.
    """
    log = Logger(observer=jsonFileLogObserver(write), namespace="twisted_lambdagw.server.resource")
    log.info("served {count} requests", count=3)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("handler crashed")
    legacy = Logger(observer=jsonFileLogObserver(write), namespace="twisted.python.log")
    legacy.info("{log_text}", log_text="Site starting on 8080", log_system="-")


class LogRelayTests(SynchronousTestCase):
    """
    A worker's stderr becomes events in the parent's log.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        self.relay = LogRelay(2, self.events.append)

    def test_events(self) -> None:
        """
        JSON events arrive whole, even when split across reads, tagged with the worker.
        """
        stream = io.StringIO()
        child_events(stream)
        data = stream.getvalue().encode("utf-8")
        self.relay.feed(data[:37])
        self.assertEqual(self.events, [])
        self.relay.feed(data[37:])
        served, crashed, legacy = self.events
        self.assertEqual(formatEvent(served), "served 3 requests")
        self.assertEqual(served["count"], 3)
        self.assertEqual(served["worker"], 2)
        self.assertIs(served["log_level"], LogLevel.info)
        self.assertEqual(served["log_system"], "worker 2 twisted_lambdagw.server.resource#info")
        text = formatEventAsClassicLogText(crashed)
        assert text is not None
        self.assertIn("[worker 2 twisted_lambdagw.server.resource#critical] handler crashed", text)
        self.assertIn("ZeroDivisionError", text)
        self.assertEqual(legacy["log_system"], "worker 2 -")
        self.assertEqual(formatEvent(legacy), "Site starting on 8080")

    def test_plain_lines(self) -> None:
        """
        Lines that are not events (a crash before logging began) are warnings; the last at flush.
        """
        self.relay.feed(b"Traceback (most recent call last):\n\n  boom\r\nImportError: x")
        self.assertEqual(
            [(e["line"], e["log_level"]) for e in self.events],
            [("Traceback (most recent call last):", LogLevel.warn), ("  boom", LogLevel.warn)],
        )
        self.relay.flush()
        self.assertEqual(self.events[-1]["line"], "ImportError: x")
        self.assertEqual(self.events[-1]["log_system"], "worker 2 stderr")
        self.assertEqual({e["worker"] for e in self.events}, {2})

    def test_bad_json(self) -> None:
        """
        A line that only looks like an event is logged as text.
        """
        self.relay.feed(b"\x1e{not json\n")
        [event] = self.events
        self.assertEqual(event["line"], "\x1e{not json")

    def test_long_line(self) -> None:
        """
        A line without an end is logged in pieces, not buffered without bound.
        """
        self.relay.feed(b"x" * (MAX_LINE * 2 + 10))
        self.assertEqual([len(e["line"]) for e in self.events], [MAX_LINE, MAX_LINE])
        self.relay.flush()
        self.assertEqual(len(self.events[-1]["line"]), 10)


class HandoffTests(SynchronousTestCase):
    """
    What the parent tells a worker survives the pipe exactly, or is refused.
    """

    def through_pipe(self, data: bytes) -> WorkerHandoff:
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        os.write(write, data)
        os.close(write)
        return WorkerHandoff.read(read)

    def test_round_trip(self) -> None:
        """
        Worker id, the whole config, options and sockets arrive equal.
        """
        handoff = WorkerHandoff(
            4,
            gateway_config(),
            {"config": "etc/gw.ini", "listen": ["tcp:0"]},
            ((3, socket.AF_INET), (4, socket.AF_INET6)),
            "twisted.internet.epollreactor",
        )
        self.assertEqual(self.through_pipe(handoff.encode()), handoff)

    def test_truncated(self) -> None:
        """
        A pipe that closes early is an error, not a partial handoff.
        """
        data = WorkerHandoff(1, gateway_config(), {}, ()).encode()
        with self.assertRaises(ValueError):
            self.through_pipe(data[:-1])
        with self.assertRaises(ValueError):
            self.through_pipe(b"")

    def test_plain_options(self) -> None:
        """
        Only plain values (and lists of them) are handed on.
        """
        self.assertEqual(
            plain_options({"a": "x", "b": [1, "y"], "c": None, "d": object(), "e": [object()]}),
            {"a": "x", "b": [1, "y"], "c": None},
        )


class ParentWatchTests(TestCase):
    """
    A worker notices when the pipe from its parent closes, and only then.
    """

    def test_parent_gone(self) -> Deferred[None]:
        """
        The end of the pipe calls gone.
        """
        from twisted.internet import reactor

        read, write = os.pipe()
        self.addCleanup(os.close, read)
        gone: Deferred[None] = Deferred()
        watch = ParentWatch(as_reactor(reactor), read, lambda: gone.callback(None))
        watch.startReading()
        self.addCleanup(watch.stopReading)
        os.write(write, b"ignored")
        os.close(write)
        return gone

    def test_reactor_shutdown(self) -> None:
        """
        The reactor disconnecting every reader at shutdown is not the parent going away.
        """
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        calls: list[None] = []
        watch = ParentWatch(as_reactor(MemoryReactor()), read, lambda: calls.append(None))
        watch.startReading()
        watch.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(calls, [])


class FakeStoppable:
    """
    A reactor that counts the calls to stop, and refuses a stop once stopped.
    """

    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1
        if self.stops > 1:
            raise ReactorNotRunning()


class StopOnceTests(SynchronousTestCase):
    """
    A worker told to stop again (a second SIGTERM, the parent's pipe closing) goes on stopping.
    """

    def test_once(self) -> None:
        """
        The first request stops the reactor and is logged; later ones change nothing.
        """
        reactor = FakeStoppable()
        events: list[LogEvent] = []
        stop = StopOnce(as_reactor(reactor), Logger(observer=cast(ILogObserver, events.append)), 3)
        stop("received SIGTERM")
        stop("received SIGTERM")
        stop("the parent process is gone")
        self.assertEqual(reactor.stops, 1)
        self.assertEqual([formatEvent(e) for e in events], ["worker 3: received SIGTERM; stopping"])

    def test_reactor_already_stopping(self) -> None:
        """
        A reactor stopped by something else first is no error.
        """
        reactor = FakeStoppable()
        reactor.stop()
        StopOnce(as_reactor(reactor), Logger(observer=cast(ILogObserver, lambda event: None)), 1)(
            "received SIGTERM"
        )
        self.assertEqual(reactor.stops, 2)


class ProcessExitTests(SynchronousTestCase):
    """
    The two ways a gateway process ends with a status of its own, as real processes.
    """

    def run_python(self, *argv: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        home = temp_dir(self)
        return subprocess.run(
            [sys.executable, *argv],
            env=child_environment(home),
            cwd=home,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_exit_after_stop(self) -> None:
        """
        exit_after_stop stops the reactor, lets the program finish, then exits with the status.
        """
        script = (
            "from twisted.internet import reactor\n"
            "from twisted_lambdagw.daemon.workers import exit_after_stop\n"
            "reactor.callWhenRunning(exit_after_stop, reactor, 3)\n"
            "reactor.run()\n"
            "print('reactor stopped')\n"
        )
        done = self.run_python("-c", script)
        self.assertEqual(done.returncode, 3, done.stderr)
        self.assertEqual(done.stdout, "reactor stopped\n")

    def test_worker_without_parent(self) -> None:
        """
        A worker started by hand, with nothing on its stdin, says so and exits 2.
        """
        done = self.run_python(
            "-P",
            "-m",
            "twisted_lambdagw.daemon.worker_main",
            "--worker",
            "1",
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(done.returncode, 2)
        self.assertIn("no handoff from the parent process", done.stderr)


def hello(event: Any, context: Any) -> Any:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "hi"}


class WorkerLabelTests(SynchronousTestCase):
    """
    With workers, each process's metrics and access log records say which process it is.
    """

    def served(self, workers: int, worker_id: int) -> tuple[list[Any], list[dict[str, Any]]]:
        """
        Serve one request; return the metrics page's samples and the access log records.
        """
        path = temp_dir(self) / "access.log"
        gw = FakeAWSGateway(
            f"[gateway]\nworkers = {workers}\naccess_log = {path}\n\n[route:/lambda/]\n",
            {"hello": hello},
            worker_id=worker_id,
        )
        gw.gateway.service.startService()
        self.addCleanup(gw.gateway.service.stopService)
        responses = []
        for url in ("http://gw/lambda/hello", "http://gw/metrics"):
            d = gw.client.get(url)
            gw.flush()
            responses.append(self.successResultOf(d))
        self.assertEqual([r.code for r in responses], [200, 200])
        page = self.successResultOf(responses[1].text())
        samples = [s for f in text_string_to_metric_families(page) for s in f.samples]
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return samples, records

    def test_labelled(self) -> None:
        """
        Every sample has the worker label; every access log record the worker field.
        """
        samples, records = self.served(workers=3, worker_id=2)
        self.assertEqual({s.labels.get("worker") for s in samples}, {"2"})
        [count] = [
            s.value
            for s in samples
            if s.name == "lambdagw_requests_total"
            and s.labels
            == {"route": "/lambda/", "function": "hello", "status_class": "2xx", "worker": "2"}
        ]
        self.assertEqual(count, 1)
        self.assertEqual([r["worker"] for r in records], [2, 2])

    def test_one_process(self) -> None:
        """
        With one process nothing changes: no label, no field.
        """
        samples, records = self.served(workers=1, worker_id=0)
        self.assertTrue(samples)
        self.assertEqual([s for s in samples if "worker" in s.labels], [])
        self.assertEqual([r for r in records if "worker" in r], [])


class MakeServiceTests(SynchronousTestCase):
    """
    The plugin's service tree with workers, in the parent and in a worker.
    """

    def options(self, text: str, *argv: str) -> Options:
        config = write_config(temp_dir(self), text)
        options = Options(reactor=as_reactor(MemoryReactor()))
        options.parseOptions(["--config", str(config), *argv])
        return options

    def listening(self, service: IService) -> list[IService]:
        assert isinstance(service, MultiService)
        return [s for s in service if isinstance(s, WorkerPool | AdoptedListeners)]

    def test_parent(self) -> None:
        """
        With workers = 2 the listeners are the pool's (with the --listen override), stopped first.
        """
        options = self.options(
            "[gateway]\nworkers = 2\n" + ROUTES, "--listen", "tcp:0:interface=127.0.0.1"
        )
        top = makeService(options, as_reactor(MemoryReactorClock()))
        [pool] = self.listening(top)
        assert isinstance(pool, WorkerPool)
        # Children stop last first: the pool stops listening before the
        # parent drains, and the workers are waited for after it.
        assert isinstance(top, MultiService)
        children = list(top)
        self.assertIs(children[0], pool.exited)
        self.assertIs(children[-1], pool)
        self.assertEqual(pool.count, 2)
        self.assertEqual([x.description for x in pool.listeners], ["tcp:0:interface=127.0.0.1"])

    def test_one_worker(self) -> None:
        """
        With workers = 1 (the default) nothing of this exists.
        """
        options = self.options(ROUTES)
        self.assertEqual(self.listening(makeService(options, as_reactor(MemoryReactorClock()))), [])

    def test_worker(self) -> None:
        """
        In a worker the listeners are the handed-over sockets.
        """
        options = self.options("[gateway]\nworkers = 2\n" + ROUTES)
        assert options.config is not None
        sock = socket.socket()
        self.addCleanup(sock.close)
        inherited = os.dup(sock.fileno())
        handoff = WorkerHandoff(1, options.config, {}, ((inherited, socket.AF_INET),))
        reactor = MemoryReactorClock()
        service = makeService(options, as_reactor(reactor), worker=handoff)
        self.assertEqual(len(self.listening(service)), 1)
        service.startService()
        self.addCleanup(service.stopService)
        [(fd, family, _)] = reactor.adoptedPorts
        self.assertEqual((fd, family), (inherited, socket.AF_INET))

    def test_unix_listener(self) -> None:
        """
        A unix: listener with workers = 2 is one usage error naming [gateway] workers.
        """
        with self.assertRaises(usage.UsageError) as caught:
            self.options("[gateway]\nworkers = 2\nlisten = unix:gw.sock\n" + ROUTES)
        self.assertIn("[gateway] workers: 2 processes cannot share", str(caught.exception))
