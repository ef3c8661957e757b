"""
The stream relay and the event-stream body reader, each against real Twisted
HTTP machinery with a scripted other side.

The relay runs in a real HTTPChannel over a StringTransport, behind the real
GatewayResource, with a L{ScriptedStream} standing in for Lambda: so the
tests can act as the transport (pause, resume, disconnect) and as Lambda
(data, completion, failure) one step at a time.  The body reader runs
inside a real C{twisted.web._newclient.Response}, whose transport proxy
and resume-on-deliverBody behaviour are what it must cope with.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import Response, TransportProxyProducer
from twisted.web.client import ResponseDone
from twisted.web.http import HTTPChannel, _DataLoss
from twisted.web.http_headers import Headers
from twisted.web.server import Request, Site

from twisted_lambdagw.core.errors import GatewayError, InvokeFailed
from twisted_lambdagw.core.eventstream import ChecksumMismatchError, InvokeComplete
from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.aws.stream import EventStreamResponse
from twisted_lambdagw.invokers.base import (
    InvokeCall,
    InvokeResult,
    ResponseStream,
    StreamingInvoker,
    StreamReceiver,
)
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.server.streaming import cut_connection

from .eventstream_encoder import flip, invoke_complete, payload_chunk
from .gateway_fixtures import config_from

ROUTE = """
[route:/s/]
aws_region = us-east-1
stream = yes
timeout = 10s
stream_idle_timeout = 3s
"""


class ScriptedStream:
    """
    A response stream the test drives by hand, recording what it was told.
    """

    def __init__(self) -> None:
        self.aws_request_id: str | None = "aws-1"
        self.executed_version: str | None = "7"
        self.receiver: StreamReceiver | None = None
        self.calls: list[str] = []

    def start(self, receiver: StreamReceiver) -> None:
        self.receiver = receiver
        self.calls.append("start")

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")

    def send(self, data: bytes) -> None:
        assert self.receiver is not None
        self.receiver.stream_data(data)


class ScriptedInvoker:
    """
    A streaming invoker whose every call returns the next scripted stream.
    """

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        raise AssertionError("a streamed route must not use invoke")

    async def invoke_stream(self, call: InvokeCall) -> ResponseStream:
        stream = ScriptedStream()
        self.streams.append(stream)
        return stream


class RelayTests(SynchronousTestCase):
    """
    The relay writes as the stream delivers, and passes flow control upstream.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        [route] = config_from(ROUTE).routes
        self.invoker = ScriptedInvoker()
        self.assertIsInstance(self.invoker, StreamingInvoker)
        self.exchanges: list[Exchange] = []
        resource = GatewayResource(
            [Binding(route, self.invoker, get_format(route.format))],
            self.clock,
            observers=[self.exchanges.append],
        )
        self.channel: Any = cast(Any, HTTPChannel())
        self.channel.site = Site(resource)
        self.channel.requestFactory = self.channel.site.requestFactory
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def get(self, method: bytes = b"GET") -> ScriptedStream:
        self.channel.dataReceived(method + b" /s/fn HTTP/1.1\r\nHost: gw\r\n\r\n")
        [stream] = self.invoker.streams
        return stream

    def test_head_then_chunks(self) -> None:
        """
        The head goes out as soon as the prelude is complete, then each piece, chunked.
        """
        stream = self.get()
        self.assertEqual(stream.calls, ["start"])
        stream.send(b'{"statusCode": 202, "headers": {"x-a": "1"}}')
        self.assertEqual(self.transport.value(), b"")
        stream.send(b"\0" * 8)
        head = self.transport.value()
        self.assertTrue(head.startswith(b"HTTP/1.1 202 "), head)
        self.assertIn(b"Transfer-Encoding: chunked\r\n", head)
        self.assertIn(b"X-A: 1\r\n", head)
        self.assertNotIn(b"Content-Length", head)
        self.transport.clear()
        stream.send(b"hello")
        self.assertEqual(self.transport.value(), b"5\r\nhello\r\n")
        assert stream.receiver is not None
        stream.receiver.stream_complete(InvokeComplete())
        self.assertEqual(self.transport.value(), b"5\r\nhello\r\n0\r\n\r\n")
        self.assertIsNone(self.channel._requestProducer)
        [exchange] = self.exchanges
        self.assertEqual(exchange.stream_outcome, "complete")
        self.assertEqual(exchange.aws_request_id, "aws-1")
        self.assertEqual(exchange.executed_version, "7")

    def test_backpressure(self) -> None:
        """
        A full client transport pauses the upstream stream; draining resumes it.
        """
        stream = self.get()
        stream.send(b"data")
        # What the transport does when its buffer fills, and when it drains.
        self.channel.pauseProducing()
        self.assertEqual(stream.calls, ["start", "pause"])
        self.channel.resumeProducing()
        self.assertEqual(stream.calls, ["start", "pause", "resume"])
        assert stream.receiver is not None
        stream.receiver.stream_complete(InvokeComplete())
        # Unregistered before finishing: the next request may register its own.
        self.assertIsNone(self.channel._requestProducer)
        self.channel.pauseProducing()
        self.assertEqual(stream.calls, ["start", "pause", "resume"])

    def test_failure_after_head_closes(self) -> None:
        """
        A broken stream after the head closes the connection without the last chunk.
        """
        stream = self.get()
        stream.send(b"partial")
        assert stream.receiver is not None
        stream.receiver.stream_failed(ChecksumMismatchError("bad"))
        # Closed, so what was written is still flushed; not aborted.
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)
        self.assertTrue(self.transport.value().endswith(b"7\r\npartial\r\n"))
        self.assertIsNone(self.channel._requestProducer)
        [exchange] = self.exchanges
        self.assertEqual(exchange.stream_outcome, "truncated")
        self.assertEqual(exchange.error_code, "ChecksumMismatchError")
        # The close completes: nothing is left to force.
        self.channel.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_is_forced(self) -> None:
        """
        A client that never reads the rest is aborted after the idle timeout.
        """
        stream = self.get()
        stream.send(b"partial")
        assert stream.receiver is not None
        stream.receiver.stream_complete(InvokeComplete("Unhandled", "{}"))
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(3)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.exchanges[0].stream_outcome, "function_error")

    def test_failure_before_head_is_an_error_reply(self) -> None:
        """
        A broken stream before any byte is an ordinary JSON 502 on a live connection.
        """
        stream = self.get()
        stream.send(b'{"statusCode": 200')
        assert stream.receiver is not None
        stream.receiver.stream_failed(InvokeFailed(detail="broken"))
        answer = self.transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 502 "), answer)
        self.assertIn(b'"error": "function invocation failed"', answer)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.exchanges[0].stream_outcome, "truncated")

    def test_stalled_client(self) -> None:
        """
        A client that reads nothing for the idle timeout is cut off, and the upstream stopped.
        """
        stream = self.get()
        stream.send(b"data")
        self.channel.pauseProducing()
        with capturedLogs() as events:
            self.clock.advance(3)
        self.assertEqual(stream.calls, ["start", "pause", "stop"])
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.exchanges[0].stream_outcome, "idle_timeout")
        [cut] = [e for e in events if "cut after" in e["log_format"]]
        self.assertIn("the client read nothing", cut["detail"])

    def test_client_gone(self) -> None:
        """
        The connection closing stops the upstream stream once, and nothing more is written.
        """
        stream = self.get()
        stream.send(b"data")
        self.channel.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(stream.calls.count("stop"), 1)
        assert stream.receiver is not None
        stream.receiver.stream_data(b"more")
        stream.receiver.stream_complete(InvokeComplete())
        self.assertEqual(self.exchanges[0].stream_outcome, "client_gone")
        self.assertEqual(self.exchanges[0].bytes_out, 4)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CapacityTests(SynchronousTestCase):
    """
    A stream occupies a slot of ``max_in_flight`` until it ends.
    """

    def test_at_capacity(self) -> None:
        """
        While one stream runs, a second request over the limit gets 503.
        """
        [route] = config_from(ROUTE).routes
        invoker = ScriptedInvoker()
        resource = GatewayResource(
            [Binding(route, invoker, get_format(route.format))], Clock(), max_in_flight=1
        )
        channels = []
        for _ in range(2):
            channel: Any = cast(Any, HTTPChannel())
            channel.site = Site(resource)
            channel.requestFactory = channel.site.requestFactory
            channel.makeConnection(StringTransport())
            channel.dataReceived(b"GET /s/fn HTTP/1.1\r\nHost: gw\r\n\r\n")
            channels.append(channel)
        self.assertEqual(len(invoker.streams), 1)
        self.assertTrue(channels[1].transport.value().startswith(b"HTTP/1.1 503 "))
        [stream] = invoker.streams
        assert stream.receiver is not None
        stream.receiver.stream_complete(InvokeComplete())
        self.assertEqual(resource.in_flight, 0)


class CutConnectionTests(SynchronousTestCase):
    """
    Cutting a started response never sends its final chunk.
    """

    def test_http2(self) -> None:
        """
        On HTTP/2 (a channel without a transport) only the stream is reset.
        """

        class Stream:
            transport = None
            aborted = False

            def abortConnection(self) -> None:
                self.aborted = True

        request: Any = cast(Any, object.__new__(Request))
        request.channel = Stream()
        cut_connection(request, Clock())
        self.assertTrue(request.channel.aborted)


class Received:
    """
    A stream receiver that records what it is given.
    """

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.ends: list[object] = []

    def stream_data(self, data: bytes) -> None:
        self.data.append(data)

    def stream_complete(self, complete: InvokeComplete) -> None:
        self.ends.append(complete)

    def stream_failed(self, error: GatewayError) -> None:
        self.ends.append(error)


class EventStreamResponseTests(SynchronousTestCase):
    """
    The body reader decodes as it goes and pauses the real connection.
    """

    def setUp(self) -> None:
        self.connection = StringTransport()
        self.proxy = TransportProxyProducer(self.connection)
        headers = Headers({b"x-amzn-RequestId": [b"r-1"], b"X-Amz-Executed-Version": [b"3"]})
        self.response: Any = Response._construct(
            (b"HTTP", 1, 1), 200, b"OK", headers, self.proxy, None
        )
        self.stream = EventStreamResponse(self.response, "fn", "gw-1")
        self.received = Received()

    def test_metadata(self) -> None:
        """
        Lambda's request id and executed version come from the response headers.
        """
        self.assertEqual(self.stream.aws_request_id, "r-1")
        self.assertEqual(self.stream.executed_version, "3")

    def test_pause_before_start_holds(self) -> None:
        """
        A pause asked for before the body starts still holds once it has started.
        """
        self.stream.pauseProducing()
        self.stream.start(self.received)
        self.assertEqual(self.connection.producerState, "paused")
        self.stream.resumeProducing()
        self.assertEqual(self.connection.producerState, "producing")

    def test_pause_while_reading(self) -> None:
        """
        A receiver can pause the connection from inside a delivery.
        """

        stream = self.stream

        class Pausing(Received):
            def stream_data(self, data: bytes) -> None:
                super().stream_data(data)
                stream.pauseProducing()

        self.stream.start(Pausing())
        self.response._bodyDataReceived(payload_chunk(b"one"))
        self.assertEqual(self.connection.producerState, "paused")

    def test_payloads_and_completion(self) -> None:
        """
        Payloads are passed on as their messages complete, then InvokeComplete.
        """
        self.stream.start(self.received)
        wire = payload_chunk(b"one") + payload_chunk(b"two") + invoke_complete()
        self.response._bodyDataReceived(wire[:30])
        self.assertEqual(self.received.data, [])
        self.response._bodyDataReceived(wire[30:])
        self.assertEqual(self.received.data, [b"one", b"two"])
        self.assertEqual(self.received.ends, [])
        self.response._bodyDataFinished()
        self.assertEqual(self.received.ends, [InvokeComplete()])

    def test_corrupt_stream_closes_connection(self) -> None:
        """
        A bad checksum fails the stream and closes the upstream connection.
        """
        self.stream.start(self.received)
        self.response._bodyDataReceived(flip(payload_chunk(b"one"), -1))
        [error] = self.received.ends
        self.assertIsInstance(error, ChecksumMismatchError)
        self.assertEqual(self.connection.producerState, "stopped")

    def test_connection_lost_mid_stream(self) -> None:
        """
        A connection lost before InvokeComplete is a truncated stream.
        """
        self.stream.start(self.received)
        self.response._bodyDataReceived(payload_chunk(b"one"))
        self.response._bodyDataFinished(Failure(_DataLoss()))
        [error] = self.received.ends
        assert isinstance(error, InvokeFailed)
        self.assertEqual(error.code, "TruncatedStreamError")

    def test_end_without_complete(self) -> None:
        """
        A body that ends cleanly but without InvokeComplete is truncated too.
        """
        self.stream.start(self.received)
        self.response._bodyDataReceived(payload_chunk(b"one"))
        self.response._bodyDataFinished(Failure(ResponseDone()))
        [error] = self.received.ends
        assert isinstance(error, InvokeFailed)
        self.assertEqual(error.code, "TruncatedStreamError")

    def test_stop(self) -> None:
        """
        Stopping closes the connection and silences the receiver, even before start.
        """
        self.stream.stopProducing()
        self.assertEqual(self.connection.producerState, "stopped")
        self.response._bodyDataReceived(payload_chunk(b"one"))
        self.response._bodyDataFinished()
        self.assertEqual(self.received.data, [])
        self.assertEqual(self.received.ends, [])
