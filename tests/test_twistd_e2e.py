"""
The real ``twistd -n lambdagw`` (and ``twist lambdagw``) as child processes:
a round trip through a loopback fake Lambda API, a config error, and a
listen failure.

These start real programs, so each test costs a second or two; the waits
are bounded so a broken child fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError, ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from twisted_lambdagw.testing import FakeContext, FakeLambda, Handler

from .aws_fixtures import AUTHORIZATION, signature_checks_out
from .process_fixtures import (
    child_environment,
    temp_dir,
    twist_command,
    twistd_command,
    write_config,
)

ACCESS_KEY = "AKIDEXAMPLEE2EFAKE01"
SECRET_KEY = "e2e-fake-secret-key-not-a-real-one-0123"
REGION = "eu-central-1"

STARTUP_TIMEOUT = 20.0
"""Seconds a child may take to listen or to exit; generous for a loaded CI machine."""

LISTENING = re.compile(rb"starting on (\d+)")
READY = re.compile(rb"ready; SIGTERM stops gracefully")
"""Printed once the gateway takes SIGTERM; a SIGTERM before that ends the process by signal."""


def real_reactor() -> Any:
    """
    The global reactor: these tests use real sockets and processes.
    """
    from twisted.internet import reactor

    return reactor


def hello(event: Any, context: FakeContext) -> Any:
    """
    A Lambda function that echoes what the gateway told it.
    """
    meta = event["meta"]
    echoed = {
        "function": context.function_name,
        "method": meta["method"],
        "path": meta["path"],
        "query": meta["query"],
        "request_id": meta["headers"]["x-request-id"][0],
    }
    return {
        "type": "HTTPJSON-REP",
        "meta": {"status": 203, "headers": {"Content-Type": "application/json", "X-Fn": "hello"}},
        "body": json.dumps(echoed),
    }


class Child(ProcessProtocol):
    """
    A child process's output (stdout and stderr together) and its end.
    """

    def __init__(self) -> None:
        self.output = b""
        self.errors = b""
        """What the child wrote to stderr alone."""
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.done = False
        self._ended: list[Deferred[None]] = []
        self._waiting: list[tuple[re.Pattern[bytes], Deferred[re.Match[bytes]]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        still = []
        for pattern, waiter in self._waiting:
            if waiter.called:
                continue  # timed out already
            match = pattern.search(self.output)
            if match is None:
                still.append((pattern, waiter))
            else:
                waiter.callback(match)
        self._waiting = still

    def errReceived(self, data: bytes) -> None:
        self.errors += data
        self.outReceived(data)

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.signal = getattr(reason.value, "signal", None)
        self.done = True
        waiting, self._waiting = self._waiting, []
        for _, waiter in waiting:
            if not waiter.called:
                waiter.errback(AssertionError(f"exited before printing it:\n{self.text}"))
        ended, self._ended = self._ended, []
        for d in ended:
            if not d.called:
                d.callback(None)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def ended(self, timeout: float = STARTUP_TIMEOUT) -> Deferred[None]:
        """
        Fires when the process has exited; fails after C{timeout} seconds.
        """
        d: Deferred[None] = Deferred()
        if self.done:
            d.callback(None)
            return d
        self._ended.append(d)
        return d.addTimeout(timeout, real_reactor())

    def printed(self, pattern: re.Pattern[bytes]) -> Deferred[re.Match[bytes]]:
        """
        Fires with the first match of C{pattern} in the output so far or to come.
        """
        d: Deferred[re.Match[bytes]] = Deferred()
        match = pattern.search(self.output)
        if match is not None:
            d.callback(match)
        elif self.done:
            d.errback(AssertionError(f"exited without printing it:\n{self.text}"))
        else:
            self._waiting.append((pattern, d))
            d.addTimeout(STARTUP_TIMEOUT, real_reactor())
        return d


class TwistdTestCase(TestCase):
    """
    Starts children in a temporary directory, and always reaps them.
    """

    timeout = 60

    def setUp(self) -> None:
        self.reactor = real_reactor()
        self.home = temp_dir(self)

    def spawn(self, argv: list[str]) -> Child:
        child = Child()
        transport = self.reactor.spawnProcess(
            child, argv[0], argv, env=child_environment(self.home), path=str(self.home)
        )

        async def reap() -> None:
            if not child.done:
                with contextlib.suppress(ProcessExitedAlready):
                    transport.signalProcess("KILL")
                await child.ended()

        self.addCleanup(lambda: Deferred.fromCoroutine(reap()))
        return child

    def write_config(self, text: str) -> Path:
        return write_config(self.home, textwrap.dedent(text))

    async def run_to_end(self, argv: list[str]) -> Child:
        child = self.spawn(argv)
        await child.ended()
        return child

    async def run_both_to_end(self, options: list[str]) -> tuple[Child, Child]:
        """
        The gateway under twistd and under twist, with the same options, each to its end.
        """
        twistd, twist = await gatherResults(
            [
                Deferred.fromCoroutine(
                    self.run_to_end([*twistd_command(), "-n", "--pidfile=", *options])
                ),
                Deferred.fromCoroutine(self.run_to_end([*twist_command(), *options])),
            ]
        )
        return twistd, twist


class LoopbackLambdaTestCase(TwistdTestCase):
    """
    Runs a fake Lambda API on a loopback port for the child to call.
    """

    async def start_fake_lambda(
        self, functions: dict[str, Handler] | None = None
    ) -> tuple[FakeLambda, int]:
        fake, _, port = await self.serve_fake_lambda(functions or {"hello": hello})
        return fake, port

    async def serve_fake_lambda(
        self, functions: Mapping[str, Handler]
    ) -> tuple[FakeLambda, WrappingFactory, int]:
        """
        A fake Lambda with exactly C{functions}, its connections (to see
        who calls it) and its port.
        """
        fake = FakeLambda(dict(functions))
        connections = WrappingFactory(Site(fake))
        port = self.reactor.listenTCP(0, connections, interface="127.0.0.1")

        async def close() -> None:
            # The child's pooled connections end when it exits; make sure
            # none outlives the test even if it was killed mid-request.
            for wrapper in list(connections.protocols):
                wrapper.transport.abortConnection()
            for _ in range(100):
                if not connections.protocols:
                    break
                await deferLater(self.reactor, 0.01)
            await port.stopListening()

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))
        return fake, connections, port.getHost().port

    def http_client(self, persistent: bool = True) -> HTTPClient:
        pool = HTTPConnectionPool(self.reactor, persistent=persistent)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(self.reactor, pool=pool))

    def aws_config(self, lambda_port: int, gateway: str = "") -> Path:
        """
        A config whose one route calls the loopback Lambda with static keys.
        """
        return write_config(
            self.home,
            f"[gateway]\n{gateway}\n\n[aws]\nregion = {REGION}\n"
            f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
            f"endpoint_url = http://127.0.0.1:{lambda_port}\n\n[route:/lambda/]\n",
        )


class RoundTripTests(LoopbackLambdaTestCase):
    """
    twistd serves a request through a loopback Lambda API and stops cleanly.
    """

    async def test_round_trip(self) -> None:
        """
        GET /lambda/hello/x?y=1 invokes hello with a valid signature; SIGTERM shuts down cleanly.
        """
        fake, lambda_port = await self.start_fake_lambda()
        config = self.write_config(
            f"""\
            [aws]
            region = {REGION}
            access_key_id = {ACCESS_KEY}
            secret_access_key = {SECRET_KEY}
            endpoint_url = http://127.0.0.1:{lambda_port}

            [route:/lambda/]
            """
        )
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", str(config)]
        child = self.spawn([*argv, "--listen", "tcp:0:interface=127.0.0.1"])
        listening = await child.printed(LISTENING)
        base = f"http://127.0.0.1:{int(listening.group(1))}"
        client = self.http_client()

        response = await client.get(
            f"{base}/lambda/hello/x?y=1", headers=Headers({"X-Request-ID": ["e2e-request-1"]})
        )
        body = await response.json()
        self.assertEqual(response.code, 203)
        self.assertEqual(response.headers.getRawHeaders("x-fn"), ["hello"])
        self.assertEqual(response.headers.getRawHeaders("x-request-id"), ["e2e-request-1"])
        self.assertEqual(
            body,
            {
                "function": "hello",
                "method": "GET",
                "path": "/lambda/hello/x",
                "query": "y=1",
                "request_id": "e2e-request-1",
            },
        )

        [call] = fake.calls
        self.assertEqual(call.function, "hello")
        self.assertEqual(call.path, "/2015-03-31/functions/hello/invocations")
        self.assertEqual(call.headers["x-amz-invocation-type"], "RequestResponse")
        match = AUTHORIZATION.fullmatch(call.headers["authorization"])
        assert match is not None, call.headers["authorization"]
        self.assertEqual((match["key"], match["region"]), (ACCESS_KEY, REGION))
        self.assertIn("host", match["signed"].split(";"))
        self.assertIn("x-amz-date", match["signed"].split(";"))
        url = f"http://127.0.0.1:{lambda_port}{call.path}"
        self.assertTrue(signature_checks_out(call, url, SECRET_KEY))
        self.assertFalse(signature_checks_out(call, url, SECRET_KEY + "x"))

        rejected = await client.get(f"{base}/lambda/bad.name/x")
        error = await rejected.json()
        self.assertEqual(rejected.code, 404)
        [request_id] = rejected.headers.getRawHeaders("x-request-id")
        self.assertEqual(error["request_id"], request_id)
        self.assertIsInstance(error["error"], str)
        self.assertEqual(len(fake.calls), 1)

        await child.printed(READY)
        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        # The gateway handles SIGTERM itself: twistd would otherwise end by
        # re-raising it (twisted.application.app._exitWithSignal), and a
        # supervisor would see "killed by SIGTERM" instead of a clean stop.
        self.assertEqual((child.exit_code, child.signal), (0, None), child.text)
        self.assertIn("received SIGTERM: stopping gracefully", child.text)
        self.assertIn("Server Shut Down.", child.text)
        self.assertNotIn("Traceback", child.text)
        # No --reactor given: Twisted's default (the gateway's own is opt-in).
        self.assertIn("reactor class: twisted.internet.epollreactor.EPollReactor.", child.text)


class StartupFailureTests(TwistdTestCase):
    """
    Startup that cannot go on ends the process with an error, not a hang.
    """

    async def test_config_error(self) -> None:
        """
        An unknown key: twistd and twist exit 1 with one line naming file, section, key.
        """
        config = self.write_config("[aws]\nregion = us-east-1\ncolour = blue\n\n[route:/lambda/]\n")
        options = ["lambdagw", "--config", str(config)]
        twistd, twist = await self.run_both_to_end(options)
        for child in twistd, twist:
            self.assertEqual((child.exit_code, child.signal), (1, None), child.text)
            # The line alone, on stderr (tests/test_twistd_ops.py has more).
            self.assertEqual(child.text, f"{config}: [aws] colour: unknown key\n")
        self.assertFalse((self.home / "twistd.pid").exists())

    async def test_port_taken(self) -> None:
        """
        A listen endpoint in use: twistd and twist exit 1 with one line naming the address.
        """
        taken = self.reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        config = self.write_config(
            "[aws]\nregion = us-east-1\naccess_key_id = AKIDX\nsecret_access_key = x\n"
            "endpoint_url = http://127.0.0.1:1\n\n[route:/lambda/]\n"
        )
        port = taken.getHost().port
        listen = f"tcp:{port}:interface=127.0.0.1"
        options = ["lambdagw", "--config", str(config), "--listen", listen]
        twistd, twist = await self.run_both_to_end(options)
        message = (
            f"lambdagw: Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."
        )
        for child in twistd, twist:
            self.assertEqual((child.exit_code, child.signal), (1, None), child.text)
            self.assertNotIn("Traceback", child.text)
        # twist: the line alone on stderr.  twistd has made stderr part of
        # its log by then, so the line is there, as a log line.
        self.assertEqual(twist.errors.decode(), message + "\n")
        [line] = [line for line in twistd.text.splitlines() if "listen" in line]
        self.assertTrue(line.endswith(f"[stderr#error] {message}"), line)

    async def test_access_log_cannot_be_opened(self) -> None:
        """
        An access log in a directory that does not exist: one line naming the key, exit 1.
        """
        missing = self.home / "no-such-dir" / "access.log"
        config = self.write_config(
            f"[gateway]\naccess_log = {missing}\n\n[aws]\nregion = us-east-1\n"
            "access_key_id = AKIDX\nsecret_access_key = x\nendpoint_url = http://127.0.0.1:1\n"
            "\n[route:/lambda/]\n"
        )
        options = ["lambdagw", "--config", str(config), "--listen", "tcp:0:interface=127.0.0.1"]
        child = await self.run_to_end([*twist_command(), *options])
        self.assertEqual((child.exit_code, child.signal), (1, None), child.text)
        self.assertNotIn("Traceback", child.text)
        self.assertEqual(
            child.errors.decode(),
            f"lambdagw: {config}: [gateway] access_log: cannot open '{missing}':"
            " No such file or directory\n",
        )


class GracefulStopTests(LoopbackLambdaTestCase):
    """
    SIGTERM: stop accepting, finish the requests under way, exit 0.
    """

    async def test_sigterm_drains(self) -> None:
        """
        A request under way at SIGTERM still gets its 200; new connections are refused.
        """
        called: Deferred[None] = Deferred()
        answer: Deferred[Any] = Deferred()

        def slow(event: Any, context: FakeContext) -> Any:
            called.callback(None)
            return answer

        _, lambda_port = await self.start_fake_lambda({"slow": slow})
        access_log = self.home / "access.log"
        config = self.aws_config(lambda_port, f"access_log = {access_log}\ndrain_timeout = 30s")
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", str(config)]
        child = self.spawn([*argv, "--listen", "tcp:0:interface=127.0.0.1"])
        port = int((await child.printed(LISTENING)).group(1))
        client = self.http_client(persistent=False)

        responding = client.get(f"http://127.0.0.1:{port}/lambda/slow")
        await called
        await child.printed(READY)
        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.printed(re.compile(rb"draining: waiting for 1 request"))
        await self.refused(port)
        self.assertFalse(child.done)

        answer.callback({"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "late"})
        response = await responding
        self.assertEqual((response.code, await response.text()), (200, "late"))
        await child.ended()
        self.assertEqual((child.exit_code, child.signal), (0, None), child.text)
        self.assertIn("drained: no request under way", child.text)
        self.assertNotIn("Traceback", child.text)
        [line] = access_log.read_text().splitlines()
        record = json.loads(line)
        self.assertEqual(
            (record["path"], record["status"], record["outcome"]), ("/lambda/slow", 200, "served")
        )

    async def test_twist_exits_zero(self) -> None:
        """
        twist, as systemd runs it, also ends a SIGTERM with exit status 0.
        """
        _, lambda_port = await self.start_fake_lambda()
        config = self.aws_config(lambda_port)
        options = ["lambdagw", "--config", str(config), "--listen", "tcp:0:interface=127.0.0.1"]
        child = self.spawn([*twist_command(), *options])
        await child.printed(LISTENING)
        await child.printed(READY)
        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        self.assertEqual((child.exit_code, child.signal), (0, None), child.text)
        self.assertIn("received SIGTERM: stopping gracefully", child.text)

    async def refused(self, port: int) -> None:
        """
        Wait until connecting to C{port} is refused (the listener closes on
        the reactor's next turn after the signal).
        """
        for _ in range(200):
            endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", port)
            try:
                protocol = await endpoint.connect(Factory.forProtocol(Protocol))
            except ConnectionRefusedError:
                return
            assert isinstance(protocol, Protocol) and protocol.transport is not None
            protocol.transport.loseConnection()
            await deferLater(self.reactor, 0.05)
        self.fail("the gateway still accepts connections")


class JSONLoggerTests(LoopbackLambdaTestCase):
    """
    twistd --logger twisted_lambdagw.observe.logs.json_observer: every line is one JSON object.
    """

    async def test_json_lines(self) -> None:
        """
        The log and the access log (both on stdout) are JSON lines, and hold no secret.
        """
        _, lambda_port = await self.start_fake_lambda()
        config = self.aws_config(lambda_port, "access_log = -")
        argv = [
            *twistd_command(),
            "-n",
            "--pidfile=",
            "--logger",
            "twisted_lambdagw.observe.logs.json_observer",
            *("--reactor", "lambdagw-epoll"),  # the opt-in reactor, by its plugin
            *("lambdagw", "--config", str(config), "--listen", "tcp:0:interface=127.0.0.1"),
        ]
        child = self.spawn(argv)
        port = int((await child.printed(LISTENING)).group(1))
        client = self.http_client(persistent=False)
        found = await client.get(f"http://127.0.0.1:{port}/lambda/hello/x?token=not-logged")
        self.assertEqual(found.code, 203)
        await found.content()
        missing = await client.get(
            f"http://127.0.0.1:{port}/lambda/bad.name",
            headers=Headers({"X-Request-ID": ["e2e-json-1"], "Authorization": ["Bearer e2e-tok"]}),
        )
        self.assertEqual(missing.code, 404)
        await missing.content()
        await child.printed(READY)
        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        self.assertEqual((child.exit_code, child.signal), (0, None), child.text)

        records = [json.loads(line) for line in child.text.splitlines()]
        events = [r for r in records if "level" in r]
        accesses = [r for r in records if "outcome" in r]
        self.assertEqual(len(events) + len(accesses), len(records))
        for event in events:
            self.assertEqual(list(event)[:4], ["time", "level", "namespace", "message"], event)
        reactor = "reactor class: twisted_lambdagw.daemon.reactor.GatewayReactor."
        self.assertTrue(any(reactor in str(e["message"]) for e in events), events)
        [refused] = [e for e in events if e.get("request_id") == "e2e-json-1"]
        self.assertEqual(refused["level"], "info")
        self.assertEqual(refused["namespace"], "twisted_lambdagw.server.resource.GatewayResource")
        self.assertEqual(refused["status"], 404)
        self.assertEqual(refused["path"], "/lambda/bad.name")
        self.assertEqual(
            [(a["path"], a["status"], a["function"]) for a in accesses],
            [("/lambda/hello/x", 203, "hello"), ("/lambda/bad.name", 404, None)],
        )
        for secret in (SECRET_KEY, "e2e-tok", "not-logged"):
            self.assertNotIn(secret, child.text)
