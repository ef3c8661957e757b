"""
Fault injection on real sockets: a real gateway Site in front of loopback
servers that misbehave the way networks and Lambda's front end do.

Each test starts its own servers on 127.0.0.1 and talks to the gateway with
a real HTTP client; the waits are the route timeouts and Retry-After values
the tests configure, all well under a second or two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from botocore.credentials import Credentials
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.invokers.aws.credentials import CredentialSpec
from twisted_lambdagw.server.request import request_factory

from .gateway_fixtures import ACCESS_KEY, SECRET_KEY, config_from
from .loopback import real_reactor

OK_REPLY = json.dumps({"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "fine"}).encode()

Answer = tuple[int, dict[str, str], bytes]


class ScriptedLambda(Resource):
    """
    A loopback Invoke API that gives the scripted answers in order, then 200s.

    ``answer`` may instead decide from the request; every request is kept.
    """

    isLeaf = True

    def __init__(
        self,
        script: list[Answer] | None = None,
        answer: Callable[[Request], Answer] | None = None,
    ) -> None:
        super().__init__()
        self.script = list(script or [])
        self.answer = answer
        self.requests: list[dict[str, str]] = []

    def render_POST(self, request: Request) -> bytes:
        self.requests.append(
            {
                name.decode().lower(): values[-1].decode()
                for name, values in request.requestHeaders.getAllRawHeaders()
            }
        )
        if self.answer is not None:
            status, headers, body = self.answer(request)
        elif self.script:
            status, headers, body = self.script.pop(0)
        else:
            status, headers, body = 200, {}, OK_REPLY
        request.setResponseCode(status)
        request.setHeader("x-amzn-RequestId", f"aws-{len(self.requests)}")
        for name, value in headers.items():
            request.setHeader(name, value)
        return body


def refusal(status: int, name: str, message: str, **headers: str) -> Answer:
    return (
        status,
        {"x-amzn-ErrorType": name, "Content-Type": "application/json", **headers},
        json.dumps({"Type": "User", "message": message}).encode(),
    )


class CountingFactory(ServerFactory):
    """
    Counts connections, and keeps a Deferred per connection that fires when it closes.
    """

    def __init__(self, protocol: type[Tracked]) -> None:
        self.make = protocol
        self.connections = 0
        self.closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Protocol | None:
        protocol = self.make()
        protocol.factory = self
        return protocol


class Tracked(Protocol):
    """
    A server protocol that tells its L{CountingFactory} when it comes and goes.
    """

    factory: CountingFactory

    def connectionMade(self) -> None:
        self.closed: Deferred[None] = Deferred()
        self.factory.connections += 1
        self.factory.closed.append(self.closed)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class HalfAnswer(Tracked):
    """
    Starts a 200 response, then drops the connection in the middle of the body.
    """

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            assert self.transport is not None
            self.transport.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"half')
            self.transport.loseConnection()


class Silent(Tracked):
    """
    Reads the request and never answers.
    """


class FaultTests(TestCase):
    """
    The gateway's answers when the Invoke API misbehaves.
    """

    def setUp(self) -> None:
        self.reactor = real_reactor()
        self.logged: list[LogEvent] = []
        observer = cast(ILogObserver, self.logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def listen(self, factory: IProtocolFactory) -> str:
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def serve_lambda(self, api: Resource) -> str:
        return self.listen(Site(api))

    def start_gateway(
        self, endpoint: str, route: str = "", timeout: str = "10s", **kwargs: Any
    ) -> Gateway:
        keys = f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
        if "credentials" in kwargs:
            keys = ""
        config = config_from(
            f"[aws]\nregion = us-east-1\n{keys}endpoint_url = {endpoint}\n"
            f"[route:/lambda/]\ntimeout = {timeout}\n{route}"
        )
        gateway = Gateway(config, self.reactor, **kwargs)
        gateway.service.startService()
        self.addCleanup(gateway.service.stopService)
        site = Site(gateway.resource)
        site.requestFactory = request_factory(config.gateway.max_body_size)
        self.base = self.listen(site)
        self.client = HTTPClient(Agent(self.reactor))
        return gateway

    async def request(self, method: str = "POST") -> tuple[int, Any, Any]:
        response = await self.client.request(method, self.base + "/lambda/fn", data=b"{}")
        body = await response.content()
        document = json.loads(body) if response.code >= 400 else body
        return response.code, document, response.headers

    def events(self, key: str) -> list[LogEvent]:
        return [e for e in self.logged if key in e]

    async def test_connection_refused(self) -> None:
        """
        A closed port is retried once, then a 502.
        """
        port = self.reactor.listenTCP(0, ServerFactory(), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        self.start_gateway(f"http://127.0.0.1:{number}")
        status, body, _ = await self.request()
        self.assertEqual((status, body["error"]), (502, "function invocation failed"))
        [retry] = self.events("attempt")
        self.assertEqual(retry["attempt"], 1)
        self.assertIn("refused", retry["reason"].lower())

    async def test_reset_mid_response(self) -> None:
        """
        A POST cut off mid-response is not sent again (it may have run): one 502.
        """
        server = CountingFactory(HalfAnswer)
        self.start_gateway(self.listen(server))
        status, _, _ = await self.request()
        self.assertEqual(status, 502)
        self.assertEqual(server.connections, 1)

    async def test_reset_mid_response_idempotent(self) -> None:
        """
        A GET on a retry_idempotent route is tried three times before its 502.
        """
        server = CountingFactory(HalfAnswer)
        self.start_gateway(self.listen(server), "retry_idempotent = yes\n")
        status, _, _ = await self.request("GET")
        self.assertEqual(status, 502)
        self.assertEqual(server.connections, 3)

    async def test_slow_headers_past_the_timeout(self) -> None:
        """
        No response headers within the route timeout: 504, and the connection is closed.
        """
        server = CountingFactory(Silent)
        self.start_gateway(self.listen(server), timeout="0.3s")
        status, body, _ = await self.request()
        self.assertEqual((status, body["error"]), (504, "function timed out"))
        self.assertEqual(server.connections, 1)
        await server.closed[0]

    async def test_garbage_and_empty_bodies(self) -> None:
        """
        A 200 whose body is empty or not JSON is a 502, each logged with its request id.
        """
        api = ScriptedLambda([(200, {}, b""), (200, {}, b"<html>proxy error</html>")])
        self.start_gateway(self.serve_lambda(api))
        for _ in range(2):
            status, _, _ = await self.request()
            self.assertEqual(status, 502)
        problems = [(e["problem"], e["aws_request_id"]) for e in self.events("problem")]
        self.assertEqual(
            problems,
            [("an empty body", "aws-1"), ("a body that is not JSON (24 bytes)", "aws-2")],
        )

    async def test_throttled_passes_retry_after(self) -> None:
        """
        A 429 for a POST is a 503 with Lambda's Retry-After, and no second call.
        """
        api = ScriptedLambda(
            [refusal(429, "TooManyRequestsException", "Rate exceeded", **{"Retry-After": "5"})]
        )
        self.start_gateway(self.serve_lambda(api))
        status, body, headers = await self.request()
        self.assertEqual((status, body["error"]), (503, "function throttled"))
        self.assertEqual(headers.getRawHeaders("retry-after"), ["5"])
        self.assertEqual(len(api.requests), 1)

    async def test_throttled_idempotent_waits_retry_after(self) -> None:
        """
        A GET on a retry_idempotent route waits out Retry-After and succeeds.
        """
        api = ScriptedLambda(
            [refusal(429, "TooManyRequestsException", "Rate exceeded", **{"Retry-After": "1"})]
        )
        self.start_gateway(self.serve_lambda(api), "retry_idempotent = yes\n")
        started = self.reactor.seconds()
        status, body, _ = await self.request("GET")
        self.assertEqual((status, body), (200, b"fine"))
        self.assertEqual(len(api.requests), 2)
        self.assertGreaterEqual(self.reactor.seconds() - started, 1.0)
        # Signed again after the wait: a second or more later.
        self.assertNotEqual(api.requests[0]["x-amz-date"], api.requests[1]["x-amz-date"])

    async def test_each_5xx(self) -> None:
        """
        Lambda's 500, 502, 503 and 504 are a 502 for a POST, each after one call.
        """
        statuses = [500, 502, 503, 504]
        api = ScriptedLambda([refusal(s, f"Fault{s}", f"down {s}") for s in statuses])
        self.start_gateway(self.serve_lambda(api))
        for expected_calls, _ in enumerate(statuses, start=1):
            status, body, _ = await self.request()
            self.assertEqual((status, body["error"]), (502, "function invocation failed"))
            self.assertEqual(len(api.requests), expected_calls)
        logged = [(e["status"], e["code"], e["error_message"]) for e in self.events("code")]
        self.assertEqual(logged, [(s, f"Fault{s}", f"down {s}") for s in statuses])
        self.assertEqual([e["aws_request_id"] for e in self.events("code")], [
            "aws-1", "aws-2", "aws-3", "aws-4"])  # fmt: skip

    async def test_expired_token_then_refresh(self) -> None:
        """
        ExpiredTokenException: credentials are resolved again (in a thread) and the
        call is signed again with the new ones; the client sees a 200.
        """
        keys = ["ASIAOLDKEY", "ASIANEWKEY"]
        resolved: list[str] = []

        class Rotating:
            def resolve(self, spec: CredentialSpec) -> Credentials:
                resolved.append(keys[min(len(resolved), 1)])
                return Credentials(resolved[-1], "secret", "token", method="env")

        def answer(request: Request) -> Answer:
            authorization = request.getHeader("authorization") or ""
            if "ASIAOLDKEY" in authorization:
                return refusal(403, "ExpiredTokenException", "The security token is expired")
            return 200, {}, OK_REPLY

        api = ScriptedLambda(answer=answer)
        self.start_gateway(self.serve_lambda(api), credentials=Rotating())
        status, body, _ = await self.request()
        self.assertEqual((status, body), (200, b"fine"))
        self.assertEqual(resolved, keys)
        signed_with = [r["authorization"].split("Credential=")[1][:10] for r in api.requests]
        self.assertEqual(signed_with, keys)
        self.assertEqual(api.requests[1]["x-amz-security-token"], "token")

    async def test_clock_skew(self) -> None:
        """
        "Signature expired" is a 502 and an error-level line blaming the clock.
        """
        message = "Signature expired: 20261125T010000Z is now earlier than 20261125T011000Z"
        api = ScriptedLambda([refusal(403, "InvalidSignatureException", message)])
        self.start_gateway(self.serve_lambda(api), "retry_idempotent = yes\n")
        status, _, _ = await self.request("GET")
        self.assertEqual(status, 502)
        self.assertEqual(len(api.requests), 1)
        [event] = self.events("code")
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIn("clock", event["log_format"])
        self.assertEqual(event["aws_request_id"], "aws-1")

    async def test_hanging_lambda_is_cancelled(self) -> None:
        """
        A Lambda API that accepted the request but never answers: 504 at the timeout.
        """

        class Hanging(Resource):
            isLeaf = True

            def __init__(self) -> None:
                super().__init__()
                self.pending: list[Request] = []

            def render_POST(self, request: Request) -> int:
                self.pending.append(request)
                return NOT_DONE_YET

        api = Hanging()
        self.start_gateway(self.serve_lambda(api), timeout="0.2s")
        status, _, _ = await self.request()
        self.assertEqual(status, 504)
        [request] = api.pending
        await request.notifyFinish().addErrback(lambda _: None)
