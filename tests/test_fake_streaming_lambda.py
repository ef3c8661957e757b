"""
Tests for the fake streaming Lambda, read back with the gateway's decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import treq
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import ResponseFailed
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel

from twisted_lambdagw.core.eventstream import (
    ChecksumMismatchError,
    InvokeComplete,
    LambdaStreamError,
    PayloadChunk,
    ResponseStreamDecoder,
    StreamEvent,
    TruncatedStreamError,
)
from twisted_lambdagw.core.prelude import PreludeParser, ResponseHead

from .fake_streaming_lambda import FakeStreamingLambda, body_lines

PATH = "/2021-11-15/functions/{}/response-streaming-invocations"
URL = "http://lambda.test" + PATH


@dataclass
class Reading:
    """
    One call's response, read incrementally through the decoder.
    """

    response: Any
    decoder: ResponseStreamDecoder = field(default_factory=ResponseStreamDecoder)
    events: list[StreamEvent] = field(default_factory=list)
    outcome: list[object] = field(default_factory=list)
    wire_bytes: int = 0

    def body(self) -> bytes:
        return b"".join(e.payload for e in self.events if isinstance(e, PayloadChunk))


class FullTransport(DummyChannel.TCP):
    """
    A transport whose buffer is full after every write while C{full} is set.
    """

    full = True

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.full and self.producers:
            self.producers[0][0].pauseProducing()


class FakeStreamingLambdaTests(SynchronousTestCase):
    """
    The fake's scenarios produce the event streams they promise.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.fake = FakeStreamingLambda(self.clock, delay=2.0)
        # StubTreq grows treq's functions at run time, so mypy cannot see them.
        self.stub: Any = StubTreq(self.fake)

    def call(self, name: str, payload: bytes = b"{}", query: str = "") -> Reading:
        """
        Post to the fake and start decoding its body as it arrives.
        """
        response = self.successResultOf(self.stub.post(URL.format(name) + query, data=payload))
        reading = Reading(response)

        def received(data: bytes) -> None:
            reading.wire_bytes += len(data)
            reading.events.extend(reading.decoder.feed(data))

        def ended(result: object) -> object:
            if isinstance(result, Failure):
                return result
            return reading.decoder.finish()

        done = treq.collect(response, received).addBoth(ended)
        done.addBoth(reading.outcome.append)
        self.stub.flush()
        return reading

    def test_prelude(self) -> None:
        """
        The prelude, split over chunks and writes, parses to its head and body.
        """
        reading = self.call("prelude")
        self.assertEqual(reading.response.code, 200)
        self.assertEqual(
            reading.response.headers.getRawHeaders("content-type"),
            ["application/vnd.amazon.eventstream"],
        )
        self.assertEqual(reading.outcome, [InvokeComplete()])
        self.assertGreater(len(reading.events), 20)
        parser = PreludeParser(mode="always")
        heads = [parser.feed(e.payload) for e in reading.events if isinstance(e, PayloadChunk)]
        head = next(h for h, _ in heads if h is not None)
        self.assertEqual(head.status, 201)
        self.assertIn(("x-fake", "two"), head.headers)
        self.assertIn(("Set-Cookie", "b=2"), head.headers)
        self.assertEqual(b"".join(b for _, b in heads), b"".join(body_lines(20)))
        self.assertTrue(self.fake.invocations[0].finished)

    def test_slow(self) -> None:
        """
        Slow events arrive one by one as the clock advances.
        """
        reading = self.call("slow")
        self.assertEqual(reading.body().count(b"data:"), 1)
        self.assertEqual(reading.outcome, [])
        self.clock.advance(2.0)
        self.stub.flush()
        self.assertEqual(reading.body().count(b"data:"), 2)
        self.clock.pump([2.0] * 5)
        self.stub.flush()
        self.assertEqual(reading.body().count(b"data:"), 5)
        self.assertEqual(reading.outcome, [InvokeComplete()])

    def test_midstreamError(self) -> None:
        """
        A function error after some chunks ends with an InvokeComplete error.
        """
        reading = self.call("midstream-error")
        [complete] = reading.outcome
        assert isinstance(complete, InvokeComplete)
        self.assertEqual(complete.error_code, "Unhandled")
        self.assertIn("boom", complete.error_details or "")
        self.assertTrue(reading.body().endswith(b"line 2\n"))

    def test_failures(self) -> None:
        """
        Corrupt, cut and errored streams fail the decoder with the right error.
        """
        for name, error in [
            ("corrupt-crc", ChecksumMismatchError),
            ("cut", TruncatedStreamError),
            ("cut-mid-message", TruncatedStreamError),
            ("stream-error", LambdaStreamError),
        ]:
            [outcome] = self.call(name).outcome
            assert isinstance(outcome, Failure), (name, outcome)
            self.assertTrue(outcome.check(error), (name, outcome))

    def test_drop(self) -> None:
        """
        A dropped connection loses the end of the chunked response.
        """
        reading = self.call("drop")
        [outcome] = reading.outcome
        assert isinstance(outcome, Failure)
        outcome.trap(ResponseFailed)
        self.assertTrue(reading.body().endswith(b"line 2\n"))

    def test_bulk(self) -> None:
        """
        A bulk stream yields to the clock every burst and delivers every byte.
        """
        self.fake = FakeStreamingLambda(self.clock, burst=100_000)
        self.stub = StubTreq(self.fake)
        reading = self.call("bulk-300000")
        self.assertEqual(reading.outcome, [])
        self.clock.pump([0] * 5)
        self.stub.flush()
        self.assertEqual(reading.outcome, [InvokeComplete()])
        self.assertEqual(self.fake.invocations[0].bytes_written, reading.wire_bytes)
        head, body = PreludeParser(mode="always").feed(reading.body())
        self.assertEqual(head, ResponseHead(200, (("content-type", "application/octet-stream"),)))
        self.assertEqual(body, (bytes(range(256)) * 1200)[:300_000])

    def test_awsErrors(self) -> None:
        """
        ``missing`` and ``throttled`` answer with Lambda's JSON errors.
        """
        for name, status, code in [
            ("missing", 404, "ResourceNotFoundException"),
            ("throttled", 429, "TooManyRequestsException"),
            ("no-such-scenario", 404, "ResourceNotFoundException"),
        ]:
            response = self.successResultOf(self.stub.post(URL.format(name), data=b"{}"))
            self.assertEqual(response.code, status)
            self.assertEqual(response.headers.getRawHeaders("x-amzn-errortype"), [code])

    def test_recordsCalls(self) -> None:
        """
        Each call is recorded with its decoded name, qualifier, headers and payload.
        """
        reading = self.call("echo%3Alive", b'{"x": 1}', "?Qualifier=prod")
        self.assertEqual(reading.body(), b'{"x": 1}')
        [call] = self.fake.invocations
        self.assertEqual(call.function, "echo:live")
        self.assertEqual(call.qualifier, "prod")
        self.assertEqual(call.payload, b'{"x": 1}')
        self.assertEqual(call.headers["host"], ["lambda.test"])

    def test_cancelled(self) -> None:
        """
        A caller that goes away stops the playback and is recorded as cancelled.
        """
        response = self.successResultOf(self.stub.post(URL.format("slow"), data=b""))

        def hang_up(data: bytes) -> None:
            raise RuntimeError("client went away")

        failed = treq.collect(response, hang_up)
        self.stub.flush()
        self.failureResultOf(failed, RuntimeError)
        self.assertTrue(self.fake.invocations[0].cancelled)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_backpressure(self) -> None:
        """
        The playback stops writing as soon as the transport pauses it, until resumed.
        """
        fake = FakeStreamingLambda(self.clock, burst=10_000_000)
        channel = DummyChannel()
        channel.site = Site(fake)
        transport = channel.transport = FullTransport()
        request = Request(channel)
        request.gotLength(0)
        request.requestReceived(b"POST", PATH.format("bulk-1000000").encode(), b"HTTP/1.1")
        [call] = fake.invocations
        [(producer, streaming)] = transport.producers
        self.assertTrue(streaming)
        written = call.bytes_written
        self.assertLess(written, 70_000)

        self.clock.advance(0)
        self.assertEqual(call.bytes_written, written)
        transport.full = False
        producer.resumeProducing()
        self.assertTrue(call.finished)
        self.assertGreater(call.bytes_written, 1_000_000)
