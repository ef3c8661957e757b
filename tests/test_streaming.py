"""
Streamed routes end to end in memory: the real gateway and AWSInvoker in
front of the fake streaming Lambda, on a Clock.

What goes over the wire to the client (heads, bodies, truncation), what
Lambda is asked, both timeouts, client disconnects and what the exchange
record says about each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import treq
from twisted.internet.protocol import Protocol
from twisted.logger import LogEvent, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import ResponseFailed

from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.aws.invoker import STREAM_PATH, invoke_url
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import InProcessInvoker

from .eventstream_encoder import flip, invoke_complete, payload_chunk
from .fake_streaming_lambda import (
    PRELUDE_HEADERS,
    Delay,
    Invocation,
    Step,
    body_lines,
    prelude,
)
from .gateway_fixtures import config_from
from .streaming_fixtures import StubStreamingGateway


def _stall_then_prelude(call: Invocation, delay: float) -> Iterable[Step]:
    """
    Nothing at all for 20 seconds (Lambda has not even answered), then a stream.
    """
    yield Delay(20)
    yield payload_chunk(prelude(200))
    yield invoke_complete()


def _half_prelude(call: Invocation, delay: float) -> Iterable[Step]:
    """
    Lambda answers and the prelude starts, but it is not finished for 20 seconds.
    """
    yield payload_chunk(b'{"statusCode": 200')
    yield Delay(20)
    yield payload_chunk(b"}" + b"\0" * 8 + b"late")
    yield invoke_complete()


def _bad_prelude(call: Invocation, delay: float) -> Iterable[Step]:
    yield payload_chunk(b'{"statusCode": "soon"}' + b"\0" * 8 + b"body")
    yield invoke_complete()


def _ndjson(call: Invocation, delay: float) -> Iterable[Step]:
    yield payload_chunk(b'{"n": 1}\n')
    yield Delay(delay)
    yield payload_chunk(b'{"n": 2}\n')
    yield invoke_complete()


def _broken_prelude(call: Invocation, delay: float) -> Iterable[Step]:
    yield payload_chunk(b'{"statusCode": 200')
    yield flip(payload_chunk(b"}"), -1)


SCENARIOS = {
    "broken-prelude": _broken_prelude,
    "stall": _stall_then_prelude,
    "half-prelude": _half_prelude,
    "bad-prelude": _bad_prelude,
    "ndjson": _ndjson,
}


class Read:
    """
    A client response read incrementally: chunks so far and how it ended.
    """

    def __init__(self, response: Any) -> None:
        self.response = response
        self.chunks: list[bytes] = []
        self.ended: list[object] = []
        treq.collect(response, self.chunks.append).addBoth(self.ended.append)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> list[str] | None:
        values: list[str] | None = self.response.headers.getRawHeaders(name)
        return values

    def truncated(self) -> bool:
        """
        Whether the body ended without its final chunk.
        """
        [end] = self.ended
        return isinstance(end, Failure) and end.check(ResponseFailed) is not None

    def complete(self) -> bool:
        return self.ended == [None]


class StreamTestsMixin:
    gw: StubStreamingGateway

    def setUpGateway(self, **kwargs: Any) -> None:
        self.gw = StubStreamingGateway(scenarios=SCENARIOS, **kwargs)

    def request(self, path: str, method: str = "GET", **kwargs: Any) -> Read:
        """
        Send a request to the gateway; return its response once the head arrived.
        """
        answer: list[object] = []
        self.gw.client.request(method, "http://gw.example" + path, **kwargs).addBoth(answer.append)
        self.gw.flush()
        [response] = answer
        assert not isinstance(response, Failure), response
        read = Read(response)
        self.gw.flush()
        return read

    def advance(self, seconds: float) -> None:
        self.gw.clock.advance(seconds)
        self.gw.flush()


class StreamedResponseTests(StreamTestsMixin, SynchronousTestCase):
    """
    What the function streams reaches the client, head first.
    """

    def setUp(self) -> None:
        self.setUpGateway()

    def test_prelude(self) -> None:
        """
        The prelude's status, headers and cookies become the head; the rest is the body.
        """
        read = self.request("/s/prelude")
        self.assertEqual(read.response.code, 201)
        self.assertEqual(read.body, b"".join(body_lines(20)))
        self.assertTrue(read.complete())
        self.assertEqual(read.header("content-type"), [PRELUDE_HEADERS["content-type"]])
        self.assertEqual(read.header("x-fake"), ["one", "two"])
        self.assertEqual(read.header("set-cookie"), ["a=1; Path=/", "b=2"])
        self.assertIsNone(read.header("content-length"))
        [exchange] = self.gw.exchanges
        self.assertEqual(read.header("x-request-id"), [exchange.request_id])
        self.assertEqual(exchange.status, 201)
        self.assertEqual(exchange.bytes_out, len(read.body))
        self.assertEqual(exchange.stream_outcome, "complete")
        self.assertEqual(exchange.outcome, "served")
        self.assertEqual(exchange.aws_request_id, "fake-1")
        self.assertEqual(exchange.executed_version, "$LATEST")
        self.assertEqual(exchange.time_to_first_byte, 0)

    def test_no_prelude(self) -> None:
        """
        A stream without a prelude is the body: 200, application/octet-stream.
        """
        read = self.request("/s/raw")
        self.assertEqual(read.response.code, 200)
        self.assertEqual(read.header("content-type"), ["application/octet-stream"])
        self.assertEqual(read.body, b"".join(body_lines(20)))
        self.assertTrue(read.complete())

    def test_empty(self) -> None:
        """
        A function that streams nothing gives an empty 200, not an error.
        """
        read = self.request("/s/empty")
        self.assertEqual(read.response.code, 200)
        self.assertEqual(read.body, b"")
        self.assertTrue(read.complete())
        self.assertEqual(self.gw.exchanges[0].stream_outcome, "complete")

    def test_prelude_never(self) -> None:
        """
        On a ``stream_prelude = never`` route a prelude is passed through as body.
        """
        read = self.request("/raw/prelude")
        self.assertEqual(read.response.code, 200)
        self.assertTrue(read.body.startswith(b'{"statusCode":201'))

    def test_prelude_always(self) -> None:
        """
        On a ``stream_prelude = always`` route a stream without one is a 502.
        """
        read = self.request("/always/raw")
        self.assertEqual(read.response.code, 502)
        self.assertEqual(json.loads(read.body)["error"], "malformed function reply")
        self.assertEqual(self.gw.exchanges[0].stream_outcome, "malformed")

    def test_bad_prelude(self) -> None:
        """
        A prelude with invalid metadata is a 502; the metadata never reaches the client.
        """
        read = self.request("/s/bad-prelude")
        self.assertEqual(read.response.code, 502)
        self.assertNotIn(b"soon", read.body)
        self.assertEqual(self.gw.exchanges[0].stream_outcome, "malformed")

    def test_sse_arrives_event_by_event(self) -> None:
        """
        Each event reaches the client when the function sends it, not at the end.
        """
        read = self.request("/s/slow")
        self.assertEqual(read.response.code, 200)
        self.assertEqual(read.header("content-type"), ["text/event-stream"])
        self.assertEqual(read.body, b"data: event 0\n\n")
        self.assertEqual(read.ended, [])
        self.advance(2)
        self.assertEqual(read.body, b"data: event 0\n\ndata: event 1\n\n")
        for _ in range(4):
            self.advance(2)
        self.assertEqual(read.body.count(b"data: event"), 5)
        self.assertTrue(read.complete())
        [exchange] = self.gw.exchanges
        self.assertEqual(exchange.time_to_first_byte, 0)
        self.assertEqual(exchange.duration, 10)

    def test_json_body_is_not_held(self) -> None:
        """
        A body that starts with ``{`` but is no prelude goes out as soon as its first object ends.
        """
        read = self.request("/s/ndjson")
        self.assertEqual(read.body, b'{"n": 1}\n')
        self.advance(2)
        self.assertEqual(read.body, b'{"n": 1}\n{"n": 2}\n')
        self.assertTrue(read.complete())

    def test_event_and_call(self) -> None:
        """
        The route's event is posted, signed, to the response-streaming API.
        """
        read = self.request("/s/echo?x=1", method="POST", data=b"hello")
        event = json.loads(read.body)
        self.assertEqual(event["type"], "HTTPJSON-REQ")
        self.assertEqual(event["body"], "hello")
        [call] = self.gw.lambda_api.invocations
        self.assertEqual(call.function, "echo")
        self.assertEqual(call.headers["x-amz-invocation-type"], ["RequestResponse"])
        [authorization] = call.headers["authorization"]
        self.assertTrue(authorization.startswith("AWS4-HMAC-SHA256 Credential="))
        self.assertIn("/us-west-2/lambda/aws4_request", authorization)

    def test_stream_url(self) -> None:
        """
        The streaming URL is encoded like Invoke's: ARN colons and $LATEST escaped.
        """
        arn = "arn:aws:lambda:us-west-2:123456789012:function:f"
        self.assertEqual(
            invoke_url("https://lambda.example/", arn, "$LATEST", STREAM_PATH),
            "https://lambda.example/2021-11-15/functions/"
            "arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Af"
            "/response-streaming-invocations?Qualifier=%24LATEST",
        )

    def test_head_request(self) -> None:
        """
        HEAD gets the head only, and the function's stream is abandoned.
        """
        read = self.request("/s/slow", method="HEAD")
        self.assertEqual(read.response.code, 200)
        self.assertEqual(read.body, b"")
        self.assertTrue(read.complete())
        self.assertTrue(self.gw.lambda_api.invocations[0].cancelled)
        self.assertEqual(self.gw.exchanges[0].bytes_out, 0)
        self.assertEqual(self.gw.clock.getDelayedCalls(), [])

    def test_in_flight_for_the_whole_stream(self) -> None:
        """
        A stream counts as in flight until it ends, not only until it starts.
        """
        resource = self.gw.gateway.resource
        read = self.request("/s/slow")
        self.assertEqual(resource.in_flight, 1)
        for _ in range(5):
            self.advance(2)
        self.assertTrue(read.complete())
        self.assertEqual(resource.in_flight, 0)


class StreamErrorTests(StreamTestsMixin, SynchronousTestCase):
    """
    Failures before the first byte follow the error contract; later ones truncate.
    """

    def setUp(self) -> None:
        self.setUpGateway()

    def assertErrorReply(self, read: Read, status: int, error: str) -> None:
        self.assertEqual(read.response.code, status)
        self.assertTrue(read.complete())
        document = json.loads(read.body)
        self.assertEqual(document["error"], error)
        self.assertEqual(document["request_id"], self.gw.exchanges[-1].request_id)
        self.assertEqual(read.header("x-request-id"), [document["request_id"]])

    def test_error_before_body(self) -> None:
        """
        A function that fails before streaming anything is a 502, details only in the log.
        """
        with capturedLogs() as events:
            read = self.request("/s/error-before-body")
        self.assertErrorReply(read, 502, "function error")
        self.assertNotIn(b"failed at once", read.body)
        [exchange] = self.gw.exchanges
        self.assertEqual(exchange.stream_outcome, "function_error")
        self.assertEqual(exchange.function_error, "Unhandled")
        self.assertIsNotNone(exchange.first_byte)
        [logged] = _logged(events, "failed while streaming")
        self.assertEqual(logged["error_message"], "failed at once")
        self.assertEqual(logged["request_id"], exchange.request_id)

    def test_throttled(self) -> None:
        """
        A 429 from Lambda before streaming is a 503 with Retry-After.
        """
        read = self.request("/s/throttled")
        self.assertErrorReply(read, 503, "function throttled")
        self.assertEqual(read.header("retry-after"), ["1"])
        [exchange] = self.gw.exchanges
        self.assertEqual(exchange.stream_outcome, "refused")
        self.assertEqual(exchange.error_code, "TooManyRequestsException")

    def test_missing(self) -> None:
        """
        Lambda's 404 for an unknown function is a 502, like for Invoke.
        """
        read = self.request("/s/missing")
        self.assertErrorReply(read, 502, "function invocation failed")
        self.assertEqual(self.gw.exchanges[0].error_code, "ResourceNotFoundException")

    def test_midstream_error(self) -> None:
        """
        A function error after the head cuts the response short and is logged.
        """
        with capturedLogs() as events:
            read = self.request("/s/midstream-error")
        self.assertEqual(read.response.code, 201)
        self.assertEqual(read.body, b"".join(body_lines(3)))
        self.assertTrue(read.truncated())
        [exchange] = self.gw.exchanges
        self.assertEqual(exchange.stream_outcome, "function_error")
        self.assertEqual(exchange.outcome, "error")
        self.assertEqual(exchange.status, 201)
        self.assertEqual(exchange.bytes_out, len(read.body))
        [failed] = _logged(events, "failed while streaming")
        self.assertEqual(failed["error_message"], "boom")
        [cut] = _logged(events, "cut after")
        self.assertEqual(cut["request_id"], exchange.request_id)
        self.assertEqual(cut["outcome"], "function_error")

    def test_broken_streams(self) -> None:
        """
        A corrupt, cut, dropped or errored stream from Lambda truncates the response.
        """
        for name, code, lines in [
            ("corrupt-crc", "ChecksumMismatchError", 3),
            ("cut", "TruncatedStreamError", 3),
            ("cut-mid-message", "TruncatedStreamError", 3),
            ("drop", "TruncatedStreamError", 3),
            ("stream-error", "ServiceException", 2),
        ]:
            with capturedLogs() as events:
                read = self.request("/s/" + name)
            self.assertEqual(read.response.code, 201, name)
            self.assertEqual(read.body, b"".join(body_lines(lines)), name)
            self.assertTrue(read.truncated(), name)
            exchange = self.gw.exchanges[-1]
            self.assertEqual(exchange.stream_outcome, "truncated", name)
            self.assertEqual(exchange.error_code, code, name)
            [cut] = _logged(events, "cut after")
            self.assertEqual(cut["request_id"], exchange.request_id)

    def test_broken_before_head(self) -> None:
        """
        A stream that breaks before the head is complete is an ordinary 502.
        """
        read = self.request("/s/broken-prelude")
        self.assertErrorReply(read, 502, "malformed response stream from Lambda")
        self.assertEqual(self.gw.exchanges[0].stream_outcome, "truncated")
        self.assertEqual(self.gw.exchanges[0].error_code, "ChecksumMismatchError")


class StreamTimeoutTests(StreamTestsMixin, SynchronousTestCase):
    """
    The route timeout bounds the time to the head, the idle timeout each gap after it.
    """

    def test_no_answer(self) -> None:
        """
        Lambda not answering within the route's timeout is a 504; the call is abandoned.
        """
        self.setUpGateway()
        read = self.request_pending("/s/stall")
        self.advance(9.9)
        self.assertEqual(read, [])
        self.advance(0.1)
        [response] = read
        self.assertEqual(response.code, 504)
        [call] = self.gw.lambda_api.invocations
        self.assertTrue(call.cancelled)
        self.assertEqual(self.gw.exchanges[0].stream_outcome, "timeout")
        self.assertEqual(self.gw.clock.getDelayedCalls(), [])

    def test_prelude_too_slow(self) -> None:
        """
        A prelude still unfinished at the route's timeout is a 504 too.
        """
        self.setUpGateway()
        read = self.request_pending("/s/half-prelude")
        self.assertEqual(read, [])
        self.advance(10)
        [response] = read
        self.assertEqual(response.code, 504)
        self.assertTrue(self.gw.lambda_api.invocations[0].cancelled)
        self.assertEqual(self.gw.exchanges[0].stream_outcome, "timeout")
        self.assertEqual(self.gw.clock.getDelayedCalls(), [])

    def test_idle(self) -> None:
        """
        No data for ``stream_idle_timeout`` after the head cuts both sides.
        """
        self.setUpGateway(delay=6.0)
        with capturedLogs() as events:
            read = self.request("/s/slow")
            self.advance(4.9)
            self.assertEqual(read.ended, [])
            self.advance(0.1)
        self.assertEqual(read.body, b"data: event 0\n\n")
        self.assertTrue(read.truncated())
        self.assertTrue(self.gw.lambda_api.invocations[0].cancelled)
        [exchange] = self.gw.exchanges
        self.assertEqual(exchange.stream_outcome, "idle_timeout")
        self.assertEqual(exchange.duration, 5)
        [cut] = _logged(events, "cut after")
        self.assertIn("the function sent nothing", cut["detail"])
        self.assertEqual(self.gw.clock.getDelayedCalls(), [])

    def test_idle_resets(self) -> None:
        """
        Gaps shorter than the idle timeout never end a stream, however long it runs.
        """
        self.setUpGateway(delay=4.0)
        read = self.request("/s/slow")
        for _ in range(5):
            self.advance(4)
        self.assertTrue(read.complete())
        self.assertEqual(self.gw.exchanges[0].duration, 20)

    def request_pending(self, path: str) -> list[Any]:
        answer: list[Any] = []
        self.gw.client.get("http://gw.example" + path).addBoth(answer.append)
        self.gw.flush()
        return answer


class HangUp(Protocol):
    """
    Reads the first piece of a body, then closes the connection.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        transport: Any = self.transport
        transport.stopProducing()


class ClientGoneTests(StreamTestsMixin, SynchronousTestCase):
    """
    A client that goes away mid-stream stops the upstream call.
    """

    def test_hang_up(self) -> None:
        """
        The upstream stream is abandoned and the exchange says the client left.
        """
        self.setUpGateway()
        answer: list[Any] = []
        self.gw.client.get("http://gw.example/s/slow", unbuffered=True).addBoth(answer.append)
        self.gw.flush()
        [response] = answer
        reader = HangUp()
        response.deliverBody(reader)
        self.gw.flush()
        self.assertEqual(reader.received, [b"data: event 0\n\n"])
        [call] = self.gw.lambda_api.invocations
        self.assertTrue(call.cancelled)
        [exchange] = self.gw.exchanges
        self.assertEqual(exchange.outcome, "client_gone")
        self.assertEqual(exchange.stream_outcome, "client_gone")
        self.assertEqual(self.gw.gateway.resource.in_flight, 0)
        self.assertEqual(self.gw.clock.getDelayedCalls(), [])


class BufferedFallbackTests(SynchronousTestCase):
    """
    ``stream = yes`` with an invoker that cannot stream still answers, buffered.
    """

    def test_fallback(self) -> None:
        """
        The reply is parsed by the route's format and written at once.
        """
        from treq.testing import StubTreq
        from twisted.internet.task import Clock

        [route] = config_from("[route:/s/]\naws_region = us-east-1\nstream = yes\n").routes
        invoker = InProcessInvoker(
            {"fn": lambda event, context: {"type": "HTTPJSON-REP", "meta": {}, "body": "hi"}}
        )
        resource = GatewayResource([Binding(route, invoker, get_format(route.format))], Clock())
        client: Any = StubTreq(resource)
        response = self.successResultOf(client.get("http://gw/s/fn"))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(response.content()), b"hi")


def _logged(events: Sequence[LogEvent], text: str) -> list[LogEvent]:
    return [e for e in events if text in e.get("log_format", "")]
