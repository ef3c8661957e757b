"""
Hostile input, each through the real Site: path tricks, oversized and
malformed heads, header injection both ways, invalid UTF-8, attempts to get
past basic auth, and a slowloris client on a real socket.

Requests whose exact bytes matter are written raw on a connection to the
real GatewaySite (see L{site_fixtures}); the rest go through StubTreq.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.policies.auth import basic_authenticator
from twisted_lambdagw.server.resource import MAX_URI_LENGTH, Binding, GatewayResource
from twisted_lambdagw.server.site import MAX_HEAD_BYTES, MAX_HEADER_FIELDS, GatewaySite
from twisted_lambdagw.testing import FakeContext, InProcessInvoker

from .auth_fixtures import ALICE_HASH, InlineThreads, basic, write
from .gateway_fixtures import FakeAWSGateway, config_from
from .loopback import real_reactor
from .scratch import temp_path
from .site_fixtures import Connection, SiteUnderTest


def reply(event: Any, context: FakeContext) -> Any:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": context.function_name}


GUARDED = """
[aws]
region = us-east-1

[auth]
realm = gw
users_file = {users}

[route:/lambda/]

[route:/api/v1/]
single = api-fn

[route:/open/]
auth = none
"""


class HostileTestCase(SynchronousTestCase):
    """
    A Site with two routes behind basic auth and one open route.
    """

    def setUp(self) -> None:
        users = temp_path(self)
        write(users, f"alice:{ALICE_HASH}\n")
        self.gw = SiteUnderTest(
            {"secret": reply, "api-fn": reply, "fn": reply, "lambda": reply},
            config=config_from(GUARDED.format(users=users)),
            authenticator=basic_authenticator(users, "gw", InlineThreads()),
        )
        self.addCleanup(self.gw.stop)

    def request(self, target: bytes, *headers: bytes, method: bytes = b"GET") -> Connection:
        connection = self.gw.connect()
        head = [method + b" " + target + b" HTTP/1.1", b"Host: gw", *headers]
        connection.send(b"\r\n".join(head) + b"\r\n\r\n")
        return connection

    def status(self, target: bytes, *headers: bytes, method: bytes = b"GET") -> int:
        [status] = self.request(target, *headers, method=method).statuses()
        return status

    @property
    def invoked(self) -> list[str]:
        return [call.function for call in self.gw.invoker.calls]


class PathTests(HostileTestCase):
    """
    Dot segments, encoded slashes, doubled slashes, NUL and overlong paths.
    """

    def test_dot_segments_and_encodings(self) -> None:
        """
        ``..``, ``%2e%2e``, ``%2F`` and ``//`` are refused as ambiguous (400),
        case tricks find no route (404), and an encoded letter of a guarded
        prefix meets its login (401): none of them invokes anything.
        """
        for target in [
            b"/open/../lambda/secret",
            b"/open/%2e%2e/lambda/secret",
            b"/open/%2E%2E%2Flambda%2Fsecret",
            b"/open/..%2Flambda/secret",
            b"/open//lambda/secret",
            b"/open/./secret",
            b"//lambda/secret",
            b"/./lambda/secret",
            b"/lambda%2Fsecret",
            b"/open/secret%2F..%2F..",
            b"/open/secret%2",
            b"/open/secret%zz",
        ]:
            self.assertEqual(self.status(target), 400, target)
        for target in [b"/LAMBDA/secret", b"/Lambda/secret"]:
            self.assertEqual(self.status(target), 404, target)
        for target in [b"/%6cambda/secret", b"/%6Cambd%61/secret", b"/lambda/s%65cret"]:
            self.assertEqual(self.status(target), 401, target)
        self.assertEqual(self.invoked, [])

    def test_dot_segments_under_a_guarded_route(self) -> None:
        """
        Under a guarded prefix, dot segments and ``//`` are refused (400)
        before any route is chosen.
        """
        for target in [b"/lambda/../open/fn", b"/lambda/%2e%2e/open/fn", b"/lambda//secret"]:
            self.assertEqual(self.status(target), 400, target)
        # Absolute-form: its path is routed like any other.
        self.assertEqual(self.status(b"http://gw/lambda/secret"), 401)
        self.assertEqual(self.invoked, [])

    def test_nul_and_control_characters(self) -> None:
        """
        ``%00``, ``%0d``, ``%0a`` in the decoded path are a 400 JSON error.
        """
        for target in [b"/open/fn%00", b"/open/fn/a%00b", b"/open/fn/%0d%0aX-Injected:%20yes"]:
            connection = self.request(target)
            self.assertEqual(connection.statuses(), [400], target)
            self.assertEqual(
                connection.last_json()["error"], "request path holds a control character"
            )
        self.assertEqual(self.invoked, [])

    def test_raw_nul_in_request_line(self) -> None:
        """
        A raw NUL byte in the request line never invokes anything.
        """
        connection = self.request(b"/open/fn\x00x")
        self.assertIn(connection.statuses()[0], (400, 404))
        self.assertEqual(self.invoked, [])

    def test_overlong_uri_is_414(self) -> None:
        """
        A URI over 8 KB is a 414 JSON error; one of exactly 8 KB is served.
        """
        prefix = b"/open/fn/"
        at_limit = prefix + b"a" * (MAX_URI_LENGTH - len(prefix))
        self.assertEqual(self.status(at_limit), 200)
        connection = self.request(at_limit + b"a")
        self.assertEqual(connection.statuses(), [414])
        self.assertEqual(set(connection.last_json()), {"error", "request_id"})
        over_query = b"/open/fn?q=" + b"x" * MAX_URI_LENGTH
        self.assertEqual(self.status(over_query), 414)
        self.assertEqual(self.invoked, ["fn"])

    def test_request_line_past_the_head_limit(self) -> None:
        """
        A request line too long to buffer gets 414 from the channel, and the
        connection closes.
        """
        connection = self.gw.connect()
        connection.send(b"GET /open/fn/" + b"a" * (MAX_HEAD_BYTES + 10))
        self.assertEqual(connection.statuses(), [414])
        self.assertEqual(connection.last_json()["error"], "request line too long")
        self.assertTrue(connection.closing)
        self.assertEqual(self.invoked, [])


class Utf8Tests(HostileTestCase):
    """
    Paths and queries must be UTF-8 once percent-decoded; raw bytes must be ASCII.
    """

    def test_invalid_utf8_path(self) -> None:
        """
        ``%ff`` in the path is a 400 JSON error; a raw non-ASCII byte is refused
        with 400 by the HTTP parser already.
        """
        for target in [b"/open/fn/%ff", b"/open/fn/%c3%28"]:
            connection = self.request(target)
            self.assertEqual(connection.statuses(), [400], target)
            self.assertEqual(connection.last_json()["error"], "request path is not valid UTF-8")
        self.assertEqual(self.status(b"/open/fn/\xc3\xa9"), 400)
        self.assertEqual(self.invoked, [])

    def test_invalid_utf8_query(self) -> None:
        """
        A query that does not decode as UTF-8 is a 400; a valid one passes raw.
        """
        connection = self.request(b"/open/fn?q=%ff")
        self.assertEqual(connection.statuses(), [400])
        self.assertEqual(connection.last_json()["error"], "request query is not valid UTF-8")
        self.assertEqual(self.status(b"/open/fn?q=%C3%A9&r=a+b"), 200)
        self.assertEqual(self.gw.invoker.calls[0].payload.count(b'"query":"q=%C3%A9&r=a+b"'), 1)


class ClientHeaderTests(HostileTestCase):
    """
    Malformed and oversized request heads from clients.
    """

    def test_bare_cr_lf_and_nul_in_header_values(self) -> None:
        """
        A header value holding a bare CR, a bare LF or a NUL is refused with 400
        by the HTTP parser and the connection closes.
        """
        for header in [b"X-A: one\rX-B: two", b"X-A: one\nX-B: two", b"X-A: a\x00b"]:
            connection = self.request(b"/open/fn", header)
            self.assertEqual(connection.statuses(), [400], header)
            self.assertTrue(connection.closing)
        self.assertEqual(self.invoked, [])

    def test_header_field_count(self) -> None:
        """
        100 header fields are served; 101 get 431 and nothing is invoked.
        """
        fields = [b"X-H%d: v" % i for i in range(MAX_HEADER_FIELDS - 1)]  # plus Host
        self.assertEqual(self.status(b"/open/fn", *fields), 200)
        connection = self.request(b"/open/fn", *fields, b"X-One-Too-Many: v")
        self.assertEqual(connection.statuses(), [431])
        self.assertEqual(connection.last_json()["error"], "too many request header fields")
        self.assertEqual(self.invoked, ["fn"])

    def test_ten_thousand_headers(self) -> None:
        """
        10,000 headers in one write get a single 431 and a closed connection.
        """
        fields = [b"X-H%d: v" % i for i in range(10_000)]
        connection = self.request(b"/open/fn", *fields)
        self.assertEqual(connection.statuses(), [431])
        self.assertTrue(connection.closing)
        self.assertEqual(self.invoked, [])

    def test_oversized_headers(self) -> None:
        """
        One header over the head limit, or many that add up past it, get 431.
        """
        huge = self.request(b"/open/fn", b"X-Big: " + b"b" * MAX_HEAD_BYTES)
        self.assertEqual(huge.statuses(), [431])
        self.assertTrue(huge.closing)
        kilobyte = b"k" * 1024
        many = [b"X-K%d: %s" % (i, kilobyte) for i in range(MAX_HEAD_BYTES // 1024 + 1)]
        added_up = self.request(b"/open/fn", *many)
        self.assertEqual(added_up.statuses(), [431])
        self.assertEqual(added_up.last_json()["error"], "request header fields too large")
        self.assertEqual(self.invoked, [])


class AuthBypassTests(HostileTestCase):
    """
    Attempts to reach a guarded route without a valid login: 401 or 404, never an invoke.
    """

    GUARDED_TARGETS = [b"/lambda/secret", b"/api/v1/", b"/api/v1/anything", b"/api/v1"]

    def test_credentials_that_are_not_valid(self) -> None:
        """
        No header, another scheme, empty or garbage Basic values, a wrong
        password, an unknown or differently cased user, and extra spaces: 401
        on every guarded route, for every method.
        """
        attempts = [
            (),
            (b"Authorization: Bearer " + basic("alice", "wonderland").split()[1].encode(),),
            (b"Authorization: Basic",),
            (b"Authorization: Basic ",),
            (b"Authorization: Basic =",),
            (b"Authorization: Basic ****",),
            (b"Authorization: Basic YWxpY2U=",),  # "alice", no colon
            (b"Authorization: Basic OndvbmRlcmxhbmQ=",),  # ":wonderland"
            (b"Authorization: " + basic("alice", "wrong").encode(),),
            (b"Authorization: " + basic("Alice", "wonderland").encode(),),
            (b"Authorization: " + basic("alice ", "wonderland").encode(),),
            (b"Authorization: " + basic("alice", "wonderland ").encode(),),
            (b"Authorization: Basic  " + basic("alice", "wonderland").split()[1].encode(),),
            (b"Authorization: " + basic("alice", "wonderland").encode() + b"=",),
            (
                b"Authorization: " + basic("alice", "wrong").encode(),
                b"Authorization: " + basic("alice", "wonderland").encode(),
            ),
            (b"Proxy-Authorization: " + basic("alice", "wonderland").encode(),),
            (b"X-Authenticated-User: alice",),
        ]
        for target in self.GUARDED_TARGETS:
            for method in (b"GET", b"POST", b"OPTIONS", b"HEAD", b"DELETE"):
                for headers in attempts:
                    status = self.status(target, *headers, method=method)
                    self.assertEqual(status, 401, (target, method, headers))
        self.assertEqual(self.invoked, [])

    def test_valid_login_is_the_control(self) -> None:
        """
        The right credentials, in any case of the scheme, do get through.
        """
        good = basic("alice", "wonderland").split()[1].encode()
        for target in self.GUARDED_TARGETS:
            self.assertEqual(self.status(target, b"Authorization: basic " + good), 200)
        self.assertEqual(self.invoked, ["secret", "api-fn", "api-fn", "api-fn"])

    def test_path_tricks_toward_guarded_routes(self) -> None:
        """
        Paths that try to reach a guarded function from elsewhere are 401 or 404.
        """
        for target in [
            b"/open/../lambda/secret",
            b"/open/%2e%2e/api/v1/",
            b"//lambda/secret",
            b"%2Flambda/secret",
            b"/%2Flambda/secret",
            b"/lambda%2fsecret",
            b"/LAMBDA/secret",
            b"/api/V1/",
            b"/api/v1/../../open/fn",
            b"/lambda/secret/../../open/fn",
            b"/lambda/secret?/open/fn",
            b"/lambda/secret#/open/fn",
        ]:
            self.assertIn(self.status(target), (400, 401, 404), target)
        # twisted.web answers the asterisk form itself (405, or OPTIONS' 200).
        self.assertEqual(self.status(b"*", method=b"OPTIONS"), 200)
        self.assertEqual(self.status(b"*", method=b"GET"), 405)
        self.assertEqual(self.invoked, [])


class FunctionHeaderInjectionTests(SynchronousTestCase):
    """
    A function cannot split the response or inject headers.
    """

    def test_cr_lf_nul_in_reply_headers_are_502(self) -> None:
        """
        CR, LF or NUL in a reply header value, or a bad header name, is a 502 and
        nothing of the function's headers is written.
        """
        for headers in [
            {"X-A": "one\r\nSet-Cookie: admin=1"},
            {"X-A": "one\nSet-Cookie: admin=1"},
            {"X-A": "one\rSet-Cookie: admin=1"},
            {"X-A": "nul\x00byte"},
            {"X-A": ["fine", "bad\r\nX-Injected: 1"]},
            {"X-A\r\nX-Injected": "1"},
            {"X A": "1"},
            {"X-A:": "1"},
            {"": "1"},
        ]:
            document = {"type": "HTTPJSON-REP", "meta": {"status": 200, "headers": headers}}

            def handler(event: Any, context: FakeContext, document: Any = document) -> Any:
                return document

            gw = FakeAWSGateway("[route:/lambda/]\n", {"fn": handler})
            d = gw.client.get("http://gw/lambda/fn")
            gw.flush()
            response = self.successResultOf(d)
            self.assertEqual(response.code, 502, headers)
            self.assertIsNone(response.headers.getRawHeaders("x-a"), headers)
            self.assertIsNone(response.headers.getRawHeaders("x-injected"), headers)
            self.assertIsNone(response.headers.getRawHeaders("set-cookie"), headers)
            body = json.loads(self.successResultOf(response.content()))
            self.assertEqual(body["error"], "malformed function reply")


class RawClient(Protocol):
    """
    A client that sends a request head one byte at a time, slowly, for ever.
    """

    def __init__(self, reactor: Any, head: bytes, interval: float) -> None:
        self.reactor = reactor
        self.head = head
        self.interval = interval
        self.sent = 0
        self.received = b""
        self.closed: Deferred[None] = Deferred()
        self.sending: LoopingCall | None = None

    def connectionMade(self) -> None:
        self.sending = LoopingCall(self.send_one)
        self.sending.clock = self.reactor
        self.sending.start(self.interval)

    def send_one(self) -> None:
        assert self.transport is not None
        self.transport.write(self.head[self.sent % len(self.head) : self.sent % len(self.head) + 1])
        self.sent += 1

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.sending is not None and self.sending.running:
            self.sending.stop()
        self.closed.callback(None)


class SlowlorisLoopbackTests(TestCase):
    """
    A slowloris client on a real socket is cut off at the header deadline.
    """

    async def test_slowloris_is_closed(self) -> None:
        """
        A client trickling a never-ending head gets a 408 and a closed socket,
        though each byte it sends restarts the idle timer.
        """
        reactor = real_reactor()
        [route] = config_from("[route:/lambda/]\naws_region = us-east-1\n").routes
        invoker = InProcessInvoker({"fn": reply})
        resource = GatewayResource([Binding(route, invoker, get_format("httpjson"))], reactor)
        site = GatewaySite(resource, reactor=reactor, header_timeout=0.5, idle_timeout=0.3)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        head = b"GET /lambda/fn HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500))
        client = RawClient(reactor, head, interval=0.05)
        reactor.connectTCP(
            "127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: client)
        )
        await client.closed
        self.assertTrue(client.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"))
        self.assertLess(client.sent, len(head))
        self.assertEqual(invoker.calls, [])
