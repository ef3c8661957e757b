"""
Streamed routes over real loopback sockets: the fake streaming Lambda on one
port, the gateway on another, a real HTTP client reading as bytes arrive.

These prove what only real sockets can: that the head and each event leave
the gateway before the function has finished, that a failure after the
head reaches the client as a truncated chunked body, and that a client
reading slowly makes the gateway stop reading from Lambda instead of
buffering the stream.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web._newclient import ResponseFailed
from twisted.web.client import ResponseDone

from .fake_streaming_lambda import body_lines
from .loopback import RawClient, real_reactor
from .streaming_fixtures import LoopbackStreaming

MB = 1024 * 1024


class Reader(Protocol):
    """
    Reads a response body as it arrives, noting when each piece came.

    With C{every} and C{pause} set it reads slowly: after each C{every}
    bytes it pauses its transport for C{pause} seconds.
    """

    def __init__(self, reactor: Any, every: int = 0, pause: float = 0.0) -> None:
        self.reactor = reactor
        self.every = every
        self.pause = pause
        self.received = 0
        self.pieces: list[bytes] = []
        self.keep = every == 0
        self._since_pause = 0
        self.first: Deferred[bytes] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.keep:
            self.pieces.append(data)
        if not self.first.called:
            self.first.callback(data)
        if self.every:
            self._since_pause += len(data)
            if self._since_pause >= self.every:
                self._since_pause = 0
                transport: Any = self.transport
                transport.pauseProducing()
                self.reactor.callLater(self.pause, transport.resumeProducing)

    def connectionLost(self, reason: Failure | None = None) -> None:
        assert reason is not None and reason.value is not None
        self.ended.callback(reason.value)

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)


class StreamingWireTests(TestCase):
    """
    A real client sees the stream as it is produced, and sees its failures.
    """

    timeout = 60

    def setUp(self) -> None:
        self.reactor = real_reactor()
        self.loop = LoopbackStreaming(self.reactor, delay=0.2)
        self.loop.start()
        self.addCleanup(self.loop.stop)

    async def open(self, path: str) -> tuple[Any, Reader]:
        response = await self.loop.client.get(self.loop.url + path, unbuffered=True)
        reader = Reader(self.reactor)
        response.deliverBody(reader)
        return response, reader

    async def test_prelude_in_many_chunks(self) -> None:
        """
        A prelude split over messages and writes gives the head; the body arrives whole.
        """
        response, reader = await self.open("/s/prelude")
        self.assertEqual(response.code, 201)
        self.assertEqual(response.headers.getRawHeaders("x-fake"), ["one", "two"])
        # The production Site's request drops twisted.web's Server header.
        self.assertIsNone(response.headers.getRawHeaders("server"))
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseDone)
        self.assertEqual(reader.body, b"".join(body_lines(20)))
        [exchange] = self.loop.exchanges
        self.assertEqual(exchange.stream_outcome, "complete")
        self.assertEqual(exchange.bytes_out, len(reader.body))

    async def test_chunked_on_the_wire(self) -> None:
        """
        The response is chunked, without Content-Length, and ends with the zero chunk.
        """
        client = RawClient(b"GET /s/raw HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        port = int(self.loop.url.rsplit(":", 1)[1])
        self.reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(lambda: client))
        answer = await client.done
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertNotIn(b"Content-Length", head)
        self.assertTrue(body.endswith(b"\r\n0\r\n\r\n"), body[-20:])

    async def test_sse_first_event_before_the_end(self) -> None:
        """
        The first server-sent event reaches the client while the function is still running.
        """
        response, reader = await self.open("/s/slow")
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        first = await reader.first
        self.assertEqual(first, b"data: event 0\n\n")
        [call] = self.loop.lambda_api.invocations
        self.assertFalse(call.finished)
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseDone)
        self.assertTrue(call.finished)
        self.assertEqual(reader.body.count(b"data: event"), 5)

    async def assertTruncated(self, path: str, outcome: str, lines: int = 3) -> None:
        response, reader = await self.open(path)
        self.assertEqual(response.code, 201)
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseFailed)
        self.assertTrue(b"".join(body_lines(lines)).startswith(reader.body), reader.body)
        [exchange] = self.loop.exchanges
        self.assertEqual(exchange.stream_outcome, outcome)

    async def test_midstream_error(self) -> None:
        """
        A function error after the head truncates the client's response.
        """
        await self.assertTruncated("/s/midstream-error", "function_error")

    async def test_corrupt_crc(self) -> None:
        """
        A corrupt message after the head truncates the client's response.
        """
        await self.assertTruncated("/s/corrupt-crc", "truncated")

    async def test_cut(self) -> None:
        """
        A stream that ends without InvokeComplete truncates the client's response.
        """
        await self.assertTruncated("/s/cut", "truncated")

    async def test_error_before_body(self) -> None:
        """
        A function that fails before streaming gets the JSON 502 with the request id.
        """
        response = await self.loop.client.get(self.loop.url + "/s/error-before-body")
        self.assertEqual(response.code, 502)
        document = json.loads(await response.content())
        self.assertEqual(document["error"], "function error")
        self.assertEqual(response.headers.getRawHeaders("x-request-id"), [document["request_id"]])

    async def test_throttled(self) -> None:
        """
        Lambda's 429 before streaming is a 503 with Retry-After.
        """
        response = await self.loop.client.get(self.loop.url + "/s/throttled")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(json.loads(await response.content())["error"], "function throttled")


class BackpressureTests(TestCase):
    """
    A slow client makes the gateway read Lambda slowly instead of buffering.
    """

    timeout = 60
    size = 48 * MB

    async def test_slow_client(self) -> None:
        """
        While 48 MB stream to a client reading in bursts, the gateway's send buffer stays
        near one socket read and Lambda is held back; without backpressure both grow to
        most of the stream.
        """
        reactor = real_reactor()
        loop = LoopbackStreaming(reactor)
        loop.start()
        self.addCleanup(loop.stop)
        peak = {"buffered": 0, "ahead": 0}
        reader = Reader(reactor, every=256 * 1024, pause=0.01)

        def sample() -> None:
            # twisted.internet.abstract.FileDescriptor's write buffer.
            buffered = sum(len(t.dataBuffer) - t.offset + t._tempDataLen for t in loop.transports)
            peak["buffered"] = max(peak["buffered"], buffered)
            if loop.lambda_api.invocations:
                written = loop.lambda_api.invocations[0].bytes_written
                peak["ahead"] = max(peak["ahead"], written - reader.received)

        sampler = LoopingCall(sample)
        sampler.start(0.005)
        self.addCleanup(sampler.stop)
        response = await loop.client.get(loop.url + f"/s/bulk-{self.size}", unbuffered=True)
        response.deliverBody(reader)
        reason = await reader.ended
        self.assertIsInstance(reason, ResponseDone)
        self.assertEqual(reader.received, self.size)
        self.assertLess(peak["buffered"], 1 * MB, peak)
        self.assertLess(peak["ahead"], self.size // 2, peak)
        [exchange] = loop.exchanges
        self.assertEqual(exchange.bytes_out, self.size)
        self.assertEqual(exchange.stream_outcome, "complete")
