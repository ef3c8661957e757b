"""
Stopping in order: the sequential service, the drain on a fake clock, and the
daemon's SIGTERM and startup-failure handling with a fake signal module.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from treq.testing import StubTreq
from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.daemon.lifecycle import (
    DaemonService,
    DrainService,
    SequentialService,
    StartupFailed,
)
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import InProcessInvoker

from .gateway_fixtures import config_from


class StopRecorder(Service):
    """
    A service whose stop the test finishes, recording when it began.
    """

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log
        self.stopping: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.log.append(self.label)
        return self.stopping


class SequentialServiceTests(SynchronousTestCase):
    """
    Children stop one at a time, the last added first.
    """

    def test_stops_in_turn(self) -> None:
        """
        A child's stop begins only once the child added after it has stopped.
        """
        log: list[str] = []
        parent = SequentialService()
        first, second, third = (StopRecorder(n, log) for n in ("first", "second", "third"))
        for child in first, second, third:
            child.setServiceParent(parent)
        parent.startService()
        stopped = parent.stopService()
        self.assertEqual(log, ["third"])
        third.stopping.callback(None)
        self.assertEqual(log, ["third", "second"])
        second.stopping.callback(None)
        self.assertNoResult(stopped)
        first.stopping.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(log, ["third", "second", "first"])
        self.assertFalse(parent.running)

    def test_synchronous_children(self) -> None:
        """
        Children whose stop returns nothing are stopped at once.
        """
        parent = SequentialService()
        children = [Service(), Service()]
        for child in children:
            child.setServiceParent(parent)
        parent.startService()
        self.successResultOf(parent.stopService())
        self.assertEqual([c.running for c in children], [False, False])


def slow_resource(clock: Clock) -> tuple[GatewayResource, list[Deferred[Any]], Any]:
    """
    A gateway resource whose function "slow" answers when the test says.
    """
    answers: list[Deferred[Any]] = []

    def slow(event: Any, context: Any) -> Deferred[Any]:
        answers.append(Deferred())
        return answers[-1]

    [route] = config_from("[route:/lambda/]\naws_region = us-east-1\ntimeout = 5m\n").routes
    invoker = InProcessInvoker({"slow": slow, "fast": lambda event, context: {"ok": True}})
    resource = GatewayResource([Binding(route, invoker, get_format("httpjson"))], clock)
    return resource, answers, StubTreq(resource)


class DrainServiceTests(SynchronousTestCase):
    """
    Stopping waits for the requests under way, at most drain_timeout seconds.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource, self.answers, self.client = slow_resource(self.clock)
        self.drain = DrainService(self.resource, self.clock, timeout=30)
        self.drain.startService()

    def test_idle_stops_at_once(self) -> None:
        """
        With nothing under way, stopping is immediate, and the resource is draining.
        """
        self.successResultOf(self.drain.stopService())
        self.assertTrue(self.resource.draining)

    def test_waits_for_requests_under_way(self) -> None:
        """
        The stop fires when the last request under way has been answered.
        """
        first = self.client.get("http://gw/lambda/slow")
        second = self.client.get("http://gw/lambda/slow")
        self.client.flush()
        self.assertEqual(self.resource.active, 2)
        with capturedLogs() as events:
            stopped = self.drain.stopService()
        self.assertEqual([e["active"] for e in events], [2])
        self.answers[0].callback({"n": 1})
        self.client.flush()
        self.assertEqual(self.successResultOf(first).code, 200)
        self.assertNoResult(stopped)
        self.answers[1].callback({"n": 2})
        self.client.flush()
        self.successResultOf(stopped)
        self.assertEqual(self.successResultOf(second).code, 200)

    def test_gives_up_after_the_timeout(self) -> None:
        """
        Past drain_timeout the stop fires anyway, with a warning naming what is left.
        """
        self.client.get("http://gw/lambda/slow")
        self.client.flush()
        stopped = self.drain.stopService()
        self.clock.advance(29.9)
        self.assertNoResult(stopped)
        with capturedLogs() as events:
            self.clock.advance(0.1)
        self.successResultOf(stopped)
        [warning] = [e for e in events if e["log_level"].name == "warn"]
        self.assertEqual((warning["timeout"], warning["active"]), (30, 1))
        self.assertEqual(self.resource._idle, [])

    def raw_get(self, path: bytes) -> tuple[bytes, bool]:
        """
        One HTTP/1.1 keep-alive GET through a real Site channel: the bytes
        written back, and whether the server is closing the connection.
        """
        site = Site(self.resource, reactor=self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
        return transport.value(), transport.disconnecting

    def test_draining_answers(self) -> None:
        """
        While draining, health checks fail and each response closes its connection.
        """
        self.client.get("http://gw/lambda/slow")
        self.client.flush()
        before, closing = self.raw_get(b"/lambda/fast")
        self.assertTrue(before.startswith(b"HTTP/1.1 200 "), before)
        self.assertNotIn(b"Connection:", before)
        self.assertFalse(closing)
        self.drain.stopService()
        health, closing = self.raw_get(b"/healthz")
        self.assertTrue(health.startswith(b"HTTP/1.1 503 "), health)
        self.assertTrue(closing)
        during, closing = self.raw_get(b"/lambda/fast")
        self.assertTrue(during.startswith(b"HTTP/1.1 200 "), during)
        self.assertIn(b"\r\nConnection: close\r\n", during)
        self.assertTrue(closing)

    def test_restart_serves_again(self) -> None:
        """
        Starting the service again ends the draining state.
        """
        self.successResultOf(self.drain.stopService())
        self.drain.startService()
        self.assertFalse(self.resource.draining)


class SignalReactor(MemoryReactorClock):
    """
    A memory reactor whose calls from a signal handler wait for the test.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Callable[[], object]] = []
        self.stops = 0

    def callFromThread(self, f: Callable[..., object], *args: object, **kw: object) -> None:
        self.from_thread.append(lambda: f(*args, **kw))

    def stop(self) -> None:
        super().stop()
        self.stops += 1

    def turn(self) -> None:
        calls, self.from_thread = self.from_thread, []
        for call in calls:
            call()


class Failing(Service):
    """
    A child whose start fails as a listener or a config problem would.
    """

    def __init__(self, error: Exception) -> None:
        self.error = error

    def privilegedStartService(self) -> None:
        raise self.error

    def startService(self) -> None:
        raise self.error


class DaemonServiceTests(SynchronousTestCase):
    """
    SIGTERM is a normal stop; startup failures are one line.
    """

    def setUp(self) -> None:
        self.reactor = SignalReactor()
        self.handlers: dict[int, Callable[[int, Any], None]] = {}
        self.reopened: list[bool] = []

    def install(self, number: int, handler: Callable[[int, Any], None]) -> None:
        self.handlers[number] = handler

    def daemon(self, reopen: bool = False) -> DaemonService:
        return DaemonService(
            self.reactor,
            reopen=(lambda: self.reopened.append(True)) if reopen else None,
            install_signal=self.install,
        )

    def test_sigterm_after_the_reactor_runs(self) -> None:
        """
        The handler is installed once the reactor runs, after the reactor's own.
        """
        self.daemon().startService()
        self.assertEqual(self.handlers, {})
        self.reactor.run()
        self.assertEqual(list(self.handlers), [signal.SIGTERM])

    def test_sigterm_stops_the_reactor_once(self) -> None:
        """
        SIGTERM stops the reactor from the reactor thread; a second one does nothing more.
        """
        self.daemon().startService()
        for hook, args, kw in self.reactor.whenRunningHooks:
            hook(*args, **kw)
        handler = self.handlers[signal.SIGTERM]
        handler(signal.SIGTERM, None)
        self.assertEqual(self.reactor.stops, 0)
        with capturedLogs() as events:
            self.reactor.turn()
            handler(signal.SIGTERM, None)
            self.reactor.turn()
        self.assertEqual(self.reactor.stops, 1)
        self.assertEqual(
            [e["log_format"] for e in events],
            ["received SIGTERM: stopping gracefully", "received SIGTERM again; already stopping"],
        )

    def test_sighup_reopens(self) -> None:
        """
        With something to reopen, SIGHUP reopens it on the reactor thread.
        """
        self.daemon(reopen=True).startService()
        for hook, args, kw in self.reactor.whenRunningHooks:
            hook(*args, **kw)
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(self.reopened, [])
        self.reactor.turn()
        self.assertEqual(self.reopened, [True])

    def test_listen_failure_is_one_line(self) -> None:
        """
        CannotListenError from a child becomes StartupFailed with its message on one line.
        """
        daemon = self.daemon()
        Failing(
            CannotListenError("127.0.0.1", 80, OSError(13, "Permission denied"))
        ).setServiceParent(daemon)
        for start in daemon.privilegedStartService, daemon.startService:
            error = self.assertRaises(StartupFailed, start)
            self.assertEqual(
                str(error),
                "lambdagw: Couldn't listen on 127.0.0.1:80: [Errno 13] Permission denied.",
            )

    def test_config_failure_is_one_line(self) -> None:
        """
        A ConfigError at start (the access log) becomes StartupFailed with its text.
        """
        daemon = self.daemon()
        Failing(ConfigError("gw.ini: [gateway] access_log: cannot open 'x'")).setServiceParent(
            daemon
        )
        error = self.assertRaises(StartupFailed, daemon.startService)
        self.assertEqual(str(error), "lambdagw: gw.ini: [gateway] access_log: cannot open 'x'")

    def test_other_failures_pass(self) -> None:
        """
        Anything unexpected keeps its traceback.
        """
        daemon = self.daemon()
        Failing(ZeroDivisionError()).setServiceParent(daemon)
        self.assertRaises(ZeroDivisionError, daemon.startService)

    def test_startup_failed_is_both(self) -> None:
        """
        StartupFailed is a SystemExit (no traceback) and an Exception (twistd's daemon pipe).
        """
        error = StartupFailed("lambdagw: nope")
        self.assertIsInstance(error, SystemExit)
        self.assertIsInstance(error, Exception)
        self.assertEqual(error.code, "lambdagw: nope")
