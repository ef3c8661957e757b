"""
Streamed responses from local functions.

Three levels: the Runtime API taking a chunked streaming post apart as it
arrives (raw bytes into a real HTTPChannel); L{LocalResponseStream} turning
what the runtime reported into a stream's events; and real runtime
processes behind the real gateway on loopback, read by a real client.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, cast

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web._newclient import ResponseFailed
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import HTTPChannel
from twisted.web.server import Site
from zope.interface import implementer

from twisted_lambdagw.core.config import LocalConfig, RouteConfig
from twisted_lambdagw.core.errors import GatewayError, InvokeFailed, InvokeTimeout
from twisted_lambdagw.core.eventstream import InvokeComplete
from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.local import LocalInvoker, LocalReactor
from twisted_lambdagw.invokers.local.runtime_api import (
    Invocation,
    Outcome,
    RuntimeAPI,
    RuntimeRequest,
)
from twisted_lambdagw.invokers.local.stream import LocalResponseStream
from twisted_lambdagw.server.resource import Binding, GatewayResource

from .test_streaming_wire import Reader

FUNCTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functions")
RESPONSE = b"/2018-06-01/runtime/invocation/req-1/response"


class Sink:
    """
    A stream sink that records what the Runtime API hands it.
    """

    def __init__(self) -> None:
        self.producer: IPushProducer | None = None
        self.pieces: list[bytes] = []

    def begin(self, producer: IPushProducer) -> None:
        self.producer = producer

    def data(self, data: bytes) -> None:
        self.pieces.append(data)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def streaming_post(path: bytes = RESPONSE, *, trailer: bool = False) -> bytes:
    head = (
        b"POST " + path + b" HTTP/1.1\r\nHost: runtime\r\n"
        b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
        b"Transfer-Encoding: chunked\r\n"
    )
    if trailer:
        head += (
            b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
        )
    return head + b"\r\n"


class RuntimeStreamTests(SynchronousTestCase):
    """
    A streaming post reaches the invocation's sink piece by piece.
    """

    def setUp(self) -> None:
        self.api = RuntimeAPI(
            on_init_error=lambda body, kind: None,
            on_stream_started=lambda: self.started.append(True),
            max_streamed_size=1000,
        )
        self.started: list[bool] = []
        site = Site(self.api)
        self.channel: Any = cast(Any, HTTPChannel())
        self.channel.site = site
        self.channel.requestFactory = RuntimeRequest
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.sink = Sink()
        self.outcomes: list[object] = []

    def deliver(self, sink: Sink | None) -> None:
        invocation = Invocation("req-1", b"{}", 0, "arn", "trace", "gw-1", stream=sink)
        self.api.submit(invocation).addBoth(self.outcomes.append)
        self.channel.dataReceived(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n")
        self.assertIn(b"200 OK", self.transport.value())
        self.transport.clear()

    def test_pieces_as_they_come(self) -> None:
        """
        Each chunk goes to the sink when it arrives; the end is a streamed outcome.
        """
        self.deliver(self.sink)
        self.channel.dataReceived(streaming_post())
        self.assertEqual(self.started, [True])
        self.channel.dataReceived(chunk(b"first"))
        self.assertEqual(self.sink.pieces, [b"first"])
        self.assertEqual(self.outcomes, [])
        self.channel.dataReceived(chunk(b"second") + b"0\r\n\r\n")
        self.assertEqual(self.sink.pieces, [b"first", b"second"])
        self.assertEqual(self.outcomes, [Outcome(b"", streamed=True)])
        self.assertIn(b"202 Accepted", self.transport.value())

    def test_error_trailers(self) -> None:
        """
        Error trailers after the body make a function error with the decoded document.
        """
        self.deliver(self.sink)
        document = json.dumps({"errorType": "Boom", "errorMessage": "late"}).encode()
        self.channel.dataReceived(
            streaming_post(trailer=True)
            + chunk(b"partial")
            + b"0\r\nLambda-Runtime-Function-Error-Type: Runtime.Boom\r\n"
            + b"Lambda-Runtime-Function-Error-Body: "
            + base64.b64encode(document)
            + b"\r\n\r\n"
        )
        self.assertEqual(self.sink.pieces, [b"partial"])
        self.assertEqual(self.outcomes, [Outcome(document, "Runtime.Boom", streamed=True)])

    def test_flow_control(self) -> None:
        """
        The sink's producer pauses, resumes and aborts the runtime's connection.
        """
        self.deliver(self.sink)
        self.channel.dataReceived(streaming_post())
        producer = self.sink.producer
        assert producer is not None
        producer.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        producer.stopProducing()
        self.assertTrue(self.transport.disconnected)

    def test_connection_lost(self) -> None:
        """
        A runtime connection that closes before the last chunk fails the invocation.
        """
        self.deliver(self.sink)
        self.channel.dataReceived(streaming_post() + chunk(b"partial"))
        self.channel.connectionLost(Failure(ConnectionError("runtime died")))
        [failure] = self.outcomes
        assert isinstance(failure, Failure)
        error = failure.value
        assert isinstance(error, InvokeFailed)
        self.assertIn("before its last chunk", error.detail)

    def test_size_limit(self) -> None:
        """
        A stream past the size limit fails and its connection is aborted.
        """
        self.deliver(self.sink)
        self.channel.dataReceived(streaming_post() + chunk(b"x" * 600))
        self.channel.dataReceived(chunk(b"x" * 600))
        self.assertEqual(len(self.sink.pieces), 1)
        [failure] = self.outcomes
        assert isinstance(failure, Failure)
        error = failure.value
        assert isinstance(error, InvokeFailed)
        self.assertIn("exceeded 1000 bytes", error.detail)
        self.assertTrue(self.transport.disconnected)

    def test_no_sink_is_buffered(self) -> None:
        """
        An invocation that did not ask for a stream gets a streamed post as one response.
        """
        self.deliver(None)
        self.channel.dataReceived(streaming_post() + chunk(b"one") + chunk(b"two") + b"0\r\n\r\n")
        self.assertEqual(self.outcomes, [Outcome(b"onetwo")])
        self.assertEqual(self.started, [])

    def test_wrong_request_id(self) -> None:
        """
        A streaming post for another request id is refused, and nothing reaches the sink.
        """
        self.deliver(self.sink)
        self.channel.dataReceived(
            streaming_post(b"/2018-06-01/runtime/invocation/other/response")
            + chunk(b"data")
            + b"0\r\n\r\n"
        )
        self.assertEqual(self.sink.pieces, [])
        self.assertIn(b"400 Bad Request", self.transport.value())
        self.assertEqual(self.outcomes, [])


class Events:
    """
    A stream receiver that records every event in order.
    """

    def __init__(self) -> None:
        self.events: list[object] = []

    def stream_data(self, data: bytes) -> None:
        self.events.append(data)

    def stream_complete(self, complete: InvokeComplete) -> None:
        self.events.append(complete)

    def stream_failed(self, error: GatewayError) -> None:
        self.events.append(error)


@implementer(IPushProducer)
class Producer:
    """
    A push producer that records what it was told.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class LocalResponseStreamTests(SynchronousTestCase):
    """
    What the runtime reported becomes the stream events Lambda would send.
    """

    def setUp(self) -> None:
        self.stream = LocalResponseStream("aws-1", "$LATEST")
        self.cancelled: list[object] = []
        self.result: Deferred[Outcome] = Deferred(self.cancelled.append)
        self.stream.attach(self.result)
        self.received = Events()

    def test_buffered_response(self) -> None:
        """
        A buffered response (awslambdaric) is one chunk, then success.
        """
        self.stream.start(self.received)
        self.result.callback(Outcome(b"whole"))
        self.assertEqual(self.received.events, [b"whole", InvokeComplete()])

    def test_streamed_response(self) -> None:
        """
        Streamed pieces pass straight through; early ones wait for start.
        """
        self.stream.begin(Producer())
        self.stream.data(b"early")
        self.stream.start(self.received)
        self.stream.data(b"late")
        self.result.callback(Outcome(b"", streamed=True))
        self.assertEqual(self.received.events, [b"early", b"late", InvokeComplete()])

    def test_function_error(self) -> None:
        """
        A posted error, before or after streaming, is InvokeComplete with an error code.
        """
        self.stream.start(self.received)
        self.result.callback(Outcome(b'{"errorMessage": "no"}', "Oops"))
        self.assertEqual(
            self.received.events, [InvokeComplete("Unhandled", '{"errorMessage": "no"}')]
        )

    def test_failure(self) -> None:
        """
        A worker that failed (here: killed at its deadline) is a failed stream, error kept.
        """
        self.stream.start(self.received)
        self.result.errback(InvokeTimeout(detail="deadline"))
        [error] = self.received.events
        self.assertIsInstance(error, InvokeTimeout)

    def test_flow_control(self) -> None:
        """
        A pause asked before the runtime streams is applied when it starts.
        """
        self.stream.start(self.received)
        self.stream.pauseProducing()
        producer = Producer()
        self.stream.begin(producer)
        self.stream.resumeProducing()
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_stop(self) -> None:
        """
        Stopping aborts a running stream and abandons the invocation, silently.
        """
        producer = Producer()
        self.stream.begin(producer)
        self.stream.start(self.received)
        self.stream.stopProducing()
        self.assertEqual(producer.calls, ["stop"])
        self.assertEqual(self.cancelled, [self.result])
        self.stream.data(b"more")
        self.assertEqual(self.received.events, [])

    def test_stop_before_streaming(self) -> None:
        """
        A stream stopped before the runtime began has its connection aborted at once.
        """
        self.stream.stopProducing()
        producer = Producer()
        self.stream.begin(producer)
        self.assertEqual(producer.calls, ["stop"])


class LocalStreamingGatewayTests(TestCase):
    """
    Real runtime processes behind the real gateway, read by a real client.
    """

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor as global_reactor

        self.reactor = cast(Any, global_reactor)
        config = LocalConfig(functions_dir=FUNCTIONS, concurrency=2)
        invoker = LocalInvoker(cast(LocalReactor, self.reactor), config)
        self.addCleanup(lambda: Deferred.fromCoroutine(invoker.stop()))
        self.invoker = invoker
        routes = [
            RouteConfig(prefix=prefix, backend="local", timeout=timeout, stream=True)
            for prefix, timeout in (("/local/", 10.0), ("/short/", 1.5))
        ]
        self.exchanges: list[Exchange] = []
        resource = GatewayResource(
            [Binding(route, invoker, get_format("httpjson")) for route in routes],
            self.reactor,
            observers=[self.exchanges.append],
        )
        port = self.reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.client = HTTPClient(Agent(self.reactor, pool=pool))
        self.root = f"http://127.0.0.1:{port.getHost().port}"
        self.url = self.root + "/local/"

    async def open(self, path: str) -> tuple[Any, Reader]:
        response = await self.client.get(self.url + path, unbuffered=True)
        reader = Reader(self.reactor)
        response.deliverBody(reader)
        return response, reader

    async def test_sse_from_a_custom_runtime(self) -> None:
        """
        A streaming bootstrap's events reach the client one by one, before it finishes.
        """
        response, reader = await self.open("streamer?events=3&gap=0.3")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        first = await reader.first
        self.assertEqual(first, b"data: event 0\n\n")
        self.assertFalse(reader.ended.called)
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseDone)
        self.assertEqual(reader.body, b"data: event 0\n\ndata: event 1\n\ndata: event 2\n\n")
        [exchange] = self.exchanges
        self.assertEqual(exchange.stream_outcome, "complete")
        self.assertEqual(exchange.executed_version, "$LATEST")

    async def test_stream_outlives_route_timeout(self) -> None:
        """
        The route timeout bounds the wait for the first byte, not the whole stream.
        """
        response = await self.client.get(self.root + "/short/streamer?events=3&gap=0.9")
        self.assertEqual(response.code, 200)
        body = await response.content()
        self.assertEqual(body.count(b"data: event"), 3)
        [exchange] = self.exchanges
        self.assertEqual(exchange.stream_outcome, "complete")
        assert exchange.duration is not None
        self.assertGreater(exchange.duration, 1.5)

    async def test_midstream_error_trailers(self) -> None:
        """
        Error trailers after the first byte truncate the client's response.
        """
        response, reader = await self.open("streamer?mode=fail")
        self.assertEqual(response.code, 200)
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseFailed)
        self.assertEqual(reader.body, b"partial\n")
        [exchange] = self.exchanges
        self.assertEqual(exchange.stream_outcome, "function_error")

    async def test_error_before_body(self) -> None:
        """
        A function error posted before streaming is the JSON 502.
        """
        response = await self.client.get(self.url + "streamer?mode=error")
        self.assertEqual(response.code, 502)
        self.assertEqual(json.loads(await response.content())["error"], "function error")

    async def test_runtime_dies_midstream(self) -> None:
        """
        A runtime that exits in the middle of its stream truncates the response.
        """
        _, reader = await self.open("streamer?mode=die")
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseFailed)
        self.assertEqual(self.exchanges[0].stream_outcome, "truncated")

    async def test_large_stream(self) -> None:
        """
        Eight megabytes (past the 6 MB buffered limit) stream through whole.
        """
        size = 8 * 1024 * 1024
        _, reader = await self.open(f"streamer?mode=bytes&size={size}")
        reader.keep = False
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseDone)
        self.assertEqual(reader.received, size)

    async def test_python_function_is_buffered(self) -> None:
        """
        An awslambdaric function cannot stream: its reply comes as one piece, still 200.
        """
        _, reader = await self.open("probe")
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseDone)
        self.assertEqual(json.loads(reader.body)["event"]["type"], "HTTPJSON-REQ")
        self.assertEqual(self.exchanges[0].stream_outcome, "complete")
