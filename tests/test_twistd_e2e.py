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
import signal
import textwrap
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from twisted_lambdagw.testing import FakeContext, FakeLambda, RecordedCall

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
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
    r"/lambda/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)


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


def signature_checks_out(call: RecordedCall, url: str, secret: str) -> bool:
    """
    Whether the recorded request's SigV4 signature is right for C{secret}.

    botocore recomputes it from what arrived on the wire (the signed
    headers, the body, the URL and the request's own X-Amz-Date), as Lambda
    would.
    """
    match = AUTHORIZATION.fullmatch(call.headers["authorization"])
    if match is None:
        return False
    headers = {name: call.headers[name] for name in match["signed"].split(";")}
    request = AWSRequest(method="POST", url=url, data=call.body, headers=headers)
    request.context["timestamp"] = call.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(match["key"], secret), "lambda", match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return bool(expected == match["sig"])


class Child(ProcessProtocol):
    """
    A child process's output (stdout and stderr together) and its end.
    """

    def __init__(self) -> None:
        self.output = b""
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

    errReceived = outReceived

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


class RoundTripTests(TwistdTestCase):
    """
    twistd serves a request through a loopback Lambda API and stops cleanly.
    """

    async def start_fake_lambda(self) -> tuple[FakeLambda, int]:
        fake = FakeLambda({"hello": hello})
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
        return fake, port.getHost().port

    def http_client(self) -> HTTPClient:
        pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(self.reactor, pool=pool))

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

        assert child.transport is not None
        child.transport.signalProcess("TERM")
        await child.ended()
        # twistd stops its services, then ends itself with the signal it got
        # (twisted.application.app._exitWithSignal), so a supervisor sees
        # "terminated by SIGTERM" rather than exit status 0.
        self.assertEqual((child.exit_code, child.signal), (None, signal.SIGTERM), child.text)
        self.assertIn("Server Shut Down.", child.text)
        self.assertNotIn("Traceback", child.text)


class StartupFailureTests(TwistdTestCase):
    """
    Startup that cannot go on ends the process with an error, not a hang.
    """

    async def run_to_end(self, argv: list[str]) -> Child:
        child = self.spawn(argv)
        await child.ended()
        return child

    async def test_config_error(self) -> None:
        """
        An unknown key: twistd and twist exit non-zero with one line naming file, section, key.
        """
        config = self.write_config("[aws]\nregion = us-east-1\ncolour = blue\n\n[route:/lambda/]\n")
        options = ["lambdagw", "--config", str(config)]
        twistd, twist = await gatherResults(
            [
                Deferred.fromCoroutine(
                    self.run_to_end([*twistd_command(), "-n", "--pidfile=", *options])
                ),
                Deferred.fromCoroutine(self.run_to_end([*twist_command(), *options])),
            ]
        )
        for child in twistd, twist:
            self.assertNotEqual(child.exit_code, 0, child.text)
            self.assertIsNone(child.signal)
            self.assertNotIn("Traceback", child.text)
            lines = [line for line in child.text.splitlines() if line.strip()]
            [error] = [line for line in lines if str(config) in line]
            self.assertTrue(error.endswith(f"{config}: [aws] colour: unknown key"), error)
            # All else is Twisted's own one-line usage banner.
            others = [line for line in lines if line != error]
            self.assertEqual(len(others), 1, child.text)
            self.assertTrue(others[0].startswith("Usage: "), child.text)
        self.assertFalse((self.home / "twistd.pid").exists())

    async def test_port_taken(self) -> None:
        """
        A listen endpoint that is in use: twistd exits non-zero naming the address.
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
        child = await self.run_to_end([*twistd_command(), "-n", "--pidfile=", *options])
        self.assertNotEqual(child.exit_code, 0, child.text)
        self.assertIsNone(child.signal)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}", child.text)
        self.assertIn("Address already in use", child.text)
