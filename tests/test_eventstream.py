"""
Tests for L{twisted_lambdagw.core.eventstream}.

Messages come from L{tests.eventstream_encoder}, written apart from the
decoder, and every decoded stream is also decoded by botocore's
``EventStreamBuffer``: the two must agree.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence

from botocore.eventstream import ChecksumMismatch as BotocoreChecksumMismatch
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.core.eventstream import (
    MAX_HEADERS_LENGTH,
    MAX_PAYLOAD_LENGTH,
    ChecksumMismatchError,
    EventStreamError,
    HeaderValue,
    InvokeComplete,
    LambdaStreamError,
    Message,
    MessageDecoder,
    PayloadChunk,
    ResponseStreamDecoder,
    StreamEvent,
    Timestamp,
    TruncatedStreamError,
    UnknownEvent,
)

from .eventstream_encoder import (
    HeaderSpec,
    error_message,
    event,
    exception_message,
    flip,
    frame,
    header_bytes,
    invoke_complete,
    message,
    payload_chunk,
    prelude,
)

EMPTY_MESSAGE = bytes.fromhex("000000100000000005c248eb7d98c8ff")
"""A message with no headers and no payload, its CRCs written out by hand."""


def feed_all(decoder: MessageDecoder, pieces: Sequence[bytes]) -> list[Message]:
    """
    Feed every piece; return all messages, checking the end of the stream.
    """
    messages = [m for piece in pieces for m in decoder.feed(piece)]
    decoder.finish()
    return messages


def botocore_view(value: HeaderValue) -> object:
    """
    A header value as botocore represents it.
    """
    if isinstance(value, Timestamp):
        return value.milliseconds
    if isinstance(value, uuid.UUID):
        return value.bytes
    return value


def botocore_messages(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    """
    What botocore's EventStreamBuffer decodes from C{data}.
    """
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(dict(m.headers), m.payload) for m in buffer]


def our_messages(messages: Sequence[Message]) -> list[tuple[dict[str, object], bytes]]:
    return [({k: botocore_view(v) for k, v in m.headers.items()}, m.payload) for m in messages]


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """
    C{data} cut at the given offsets (in any order, out-of-range ones clamped).
    """
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


ALL_TYPES: list[HeaderSpec] = [
    ("true", 0, None),
    ("false", 1, None),
    ("byte", 2, -128),
    ("short", 3, 32767),
    ("int", 4, -(2**31)),
    ("long", 5, 2**63 - 1),
    ("bytes", 6, b"\x00\xff\x10"),
    ("string", 7, "héllo ✓"),
    ("timestamp", 8, 1_700_000_000_123),
    ("uuid", 9, uuid.UUID("12345678-1234-5678-1234-567812345678")),
]


class MessageDecoderTests(SynchronousTestCase):
    """
    Tests for L{MessageDecoder}: framing, checksums, headers and limits.
    """

    def test_knownAnswer(self) -> None:
        """
        A message whose bytes were written by hand decodes to no headers and no payload.
        """
        self.assertEqual(MessageDecoder().feed(EMPTY_MESSAGE), [Message({}, b"")])
        self.assertEqual(message([]), EMPTY_MESSAGE)

    def test_allHeaderTypes(self) -> None:
        """
        Each of the ten header types decodes to its Python value.
        """
        [decoded] = MessageDecoder().feed(message(ALL_TYPES, b"payload"))
        self.assertEqual(
            decoded.headers,
            {
                "true": True,
                "false": False,
                "byte": -128,
                "short": 32767,
                "int": -(2**31),
                "long": 2**63 - 1,
                "bytes": b"\x00\xff\x10",
                "string": "héllo ✓",
                "timestamp": Timestamp(1_700_000_000_123),
                "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            },
        )
        self.assertEqual(decoded.payload, b"payload")

    def test_agreesWithBotocore(self) -> None:
        """
        botocore decodes the same headers and payload from the same bytes.
        """
        data = message(ALL_TYPES, b"payload") + payload_chunk(b"x" * 1000)
        self.assertEqual(our_messages(MessageDecoder().feed(data)), botocore_messages(data))

    def test_incomplete(self) -> None:
        """
        Nothing is returned until the last byte of a message arrives.
        """
        data = payload_chunk(b"hello")
        decoder = MessageDecoder()
        for index in range(len(data) - 1):
            self.assertEqual(decoder.feed(data[index : index + 1]), [])
        self.assertEqual(decoder.pending, len(data) - 1)
        [decoded] = decoder.feed(data[-1:])
        self.assertEqual(decoded.payload, b"hello")
        self.assertEqual(decoder.pending, 0)

    def test_severalInOneFeed(self) -> None:
        """
        One piece can complete several messages and start the next one.
        """
        data = payload_chunk(b"a") + payload_chunk(b"b") + payload_chunk(b"c")
        decoder = MessageDecoder()
        first = decoder.feed(data[:-3])
        self.assertEqual([m.payload for m in first], [b"a", b"b"])
        self.assertEqual([m.payload for m in decoder.feed(data[-3:])], [b"c"])
        decoder.finish()

    def test_preludeChecksum(self) -> None:
        """
        A damaged prelude CRC is refused as soon as the prelude has arrived.
        """
        data = flip(payload_chunk(b"hello"), 9)
        with self.assertRaises(ChecksumMismatchError) as caught:
            MessageDecoder().feed(data[:12])
        self.assertIn("prelude", caught.exception.detail)

    def test_messageChecksum(self) -> None:
        """
        A damaged payload byte is refused by the message CRC.
        """
        data = payload_chunk(b"hello")
        with self.assertRaises(ChecksumMismatchError) as caught:
            MessageDecoder().feed(flip(data, len(data) - 6))
        self.assertIn("message CRC", caught.exception.detail)

    def test_headersTooLong(self) -> None:
        """
        A headers section over 128 KB is refused from the prelude alone.
        """
        data = prelude(MAX_HEADERS_LENGTH + 17, MAX_HEADERS_LENGTH + 1)
        with self.assertRaises(EventStreamError) as caught:
            MessageDecoder().feed(data)
        self.assertIn("headers length", caught.exception.detail)

    def test_headersAtLimit(self) -> None:
        """
        A headers section of exactly 128 KB is accepted.
        """
        big = header_bytes("h", 6, b"x" * 60000) + header_bytes("i", 6, b"y" * 60000)
        # One more header fills the section: 5 bytes of framing, then the value.
        headers = big + header_bytes("j", 6, b"z" * (MAX_HEADERS_LENGTH - len(big) - 5))
        self.assertEqual(len(headers), MAX_HEADERS_LENGTH)
        [decoded] = MessageDecoder().feed(frame(headers, b"p"))
        self.assertEqual(decoded.payload, b"p")

    def test_payloadTooLong(self) -> None:
        """
        A payload over 24 MB is refused from the prelude, before it is buffered.
        """
        data = prelude(MAX_PAYLOAD_LENGTH + 17, 0)
        with self.assertRaises(EventStreamError) as caught:
            MessageDecoder().feed(data)
        self.assertIn("payload length", caught.exception.detail)

    def test_totalTooShort(self) -> None:
        """
        A total length that cannot hold the prelude, headers and CRC is refused.
        """
        for total, headers_length in [(15, 0), (0, 0), (20, 5)]:
            data = prelude(total, headers_length)
            with self.assertRaises(EventStreamError):
                MessageDecoder().feed(data)

    def test_headerPastSection(self) -> None:
        """
        A header whose value runs past the declared headers length is refused.
        """
        headers = header_bytes(":event-type", 7, "PayloadChunk")
        data = frame(headers, b"payload", headers_length=len(headers) - 3)
        with self.assertRaises(EventStreamError) as caught:
            MessageDecoder().feed(data)
        self.assertIn("past the end", caught.exception.detail)

    def test_badHeaders(self) -> None:
        """
        Unknown types, duplicates, empty names and invalid UTF-8 are refused.
        """
        cases = {
            "unknown type 10": b"\x01a\x0a",
            "duplicate header 'a'": header_bytes("a", 0, None) + header_bytes("a", 1, None),
            "empty name": b"\x00\x00",
            "header 'a' is not valid UTF-8": b"\x01a\x07\x00\x02\xff\xfe",
            "header name is not valid UTF-8": b"\x01\xff\x00",
        }
        for expected, headers in cases.items():
            with self.assertRaises(EventStreamError) as caught:
                MessageDecoder().feed(frame(headers, b""))
            self.assertIn(expected, caught.exception.detail)

    def test_truncated(self) -> None:
        """
        The stream ending inside a message is L{TruncatedStreamError}.
        """
        decoder = MessageDecoder()
        decoder.feed(payload_chunk(b"hello")[:-1])
        self.assertRaises(TruncatedStreamError, decoder.finish)

    def test_failureIsFinal(self) -> None:
        """
        After one error, every later call raises it again.
        """
        decoder = MessageDecoder()
        with self.assertRaises(ChecksumMismatchError) as caught:
            decoder.feed(flip(payload_chunk(b"x"), 0))
        with self.assertRaises(ChecksumMismatchError) as again:
            decoder.feed(payload_chunk(b"y"))
        self.assertIs(again.exception, caught.exception)
        self.assertRaises(ChecksumMismatchError, decoder.finish)

    def test_errorsAre502(self) -> None:
        """
        Decoding errors are invoke failures, answered with 502.
        """
        for error in [ChecksumMismatchError("x"), TruncatedStreamError("x"), EventStreamError("x")]:
            self.assertIsInstance(error, InvokeFailed)
            self.assertEqual(error.status, 502)
            self.assertNotIn("x", error.message)


def events_of(data: bytes) -> list[StreamEvent]:
    decoder = ResponseStreamDecoder()
    events = decoder.feed(data)
    decoder.finish()
    return events


class ResponseStreamDecoderTests(SynchronousTestCase):
    """
    Tests for L{ResponseStreamDecoder}: Lambda's events and errors.
    """

    def test_chunksThenComplete(self) -> None:
        """
        PayloadChunk payloads come in order, then InvokeComplete, which finish returns.
        """
        decoder = ResponseStreamDecoder()
        data = payload_chunk(b"one") + payload_chunk(b"two") + invoke_complete()
        self.assertEqual(
            decoder.feed(data),
            [PayloadChunk(b"one"), PayloadChunk(b"two"), InvokeComplete()],
        )
        self.assertEqual(decoder.finish(), InvokeComplete())

    def test_functionError(self) -> None:
        """
        InvokeComplete carries ErrorCode, ErrorDetails and LogResult.
        """
        data = payload_chunk(b"partial") + invoke_complete("Unhandled", "boom", "bG9n")
        complete = InvokeComplete("Unhandled", "boom", "bG9n")
        self.assertEqual(events_of(data), [PayloadChunk(b"partial"), complete])

    def test_emptyErrorCode(self) -> None:
        """
        An empty ErrorCode, or an empty payload, means success.
        """
        self.assertEqual(events_of(invoke_complete("", "")), [InvokeComplete()])
        self.assertEqual(
            events_of(event("InvokeComplete", b"", "application/json")), [InvokeComplete()]
        )

    def test_badInvokeComplete(self) -> None:
        """
        An InvokeComplete payload that is not a JSON object of strings is refused.
        """
        for payload in [b"{", b"[1]", b'{"ErrorCode": 5}']:
            decoder = ResponseStreamDecoder()
            data = event("InvokeComplete", payload, "application/json")
            self.assertRaises(EventStreamError, decoder.feed, data)
            self.assertRaises(EventStreamError, decoder.feed, payload_chunk(b"more"))
            self.assertRaises(EventStreamError, decoder.finish)

    def test_emptyChunksDropped(self) -> None:
        """
        A PayloadChunk without bytes produces no event.
        """
        data = payload_chunk(b"") + payload_chunk(b"a") + invoke_complete()
        self.assertEqual(events_of(data), [PayloadChunk(b"a"), InvokeComplete()])

    def test_errorMessage(self) -> None:
        """
        An ``error`` message raises L{LambdaStreamError} with its code and message.
        """
        decoder = ResponseStreamDecoder()
        decoder.feed(payload_chunk(b"a"))
        with self.assertRaises(LambdaStreamError) as caught:
            decoder.feed(error_message("ServiceException", "it broke"))
        self.assertEqual(caught.exception.code, "ServiceException")
        self.assertEqual(caught.exception.error_message, "it broke")
        self.assertEqual(caught.exception.status, 502)
        self.assertNotIn("it broke", caught.exception.message)
        self.assertRaises(LambdaStreamError, decoder.finish)

    def test_exceptionMessage(self) -> None:
        """
        An ``exception`` message raises with its type and the JSON message.
        """
        with self.assertRaises(LambdaStreamError) as caught:
            ResponseStreamDecoder().feed(exception_message("ThrottlingException", "slow down"))
        self.assertEqual(caught.exception.code, "ThrottlingException")
        self.assertEqual(caught.exception.error_message, "slow down")

    def test_exceptionPlainPayload(self) -> None:
        """
        An ``exception`` message whose payload is not JSON keeps the text.
        """
        data = message([(":message-type", 7, "exception"), (":exception-type", 7, "X")], b"oops")
        with self.assertRaises(LambdaStreamError) as caught:
            ResponseStreamDecoder().feed(data)
        self.assertEqual(caught.exception.error_message, "oops")

    def test_unknownEvent(self) -> None:
        """
        An event type the gateway does not know is reported, not fatal.
        """
        data = event("Progress", b"{}", "application/json") + invoke_complete()
        self.assertEqual(events_of(data), [UnknownEvent("Progress"), InvokeComplete()])

    def test_malformedMessages(self) -> None:
        """
        A message without a known :message-type, or an event without a type, is refused.
        """
        cases: list[list[HeaderSpec]] = [
            [],
            [(":message-type", 7, "mystery")],
            [(":message-type", 7, "event")],
            [(":message-type", 6, b"event"), (":event-type", 7, "PayloadChunk")],
        ]
        for headers in cases:
            self.assertRaises(EventStreamError, ResponseStreamDecoder().feed, message(headers))

    def test_afterComplete(self) -> None:
        """
        A message after InvokeComplete is refused.
        """
        decoder = ResponseStreamDecoder()
        decoder.feed(invoke_complete())
        self.assertRaises(EventStreamError, decoder.feed, payload_chunk(b"late"))

    def test_noComplete(self) -> None:
        """
        A stream that ends without InvokeComplete is truncated.
        """
        decoder = ResponseStreamDecoder()
        decoder.feed(payload_chunk(b"a"))
        with self.assertRaises(TruncatedStreamError) as caught:
            decoder.finish()
        self.assertIn("InvokeComplete", caught.exception.detail)

    def test_endsInsideMessage(self) -> None:
        """
        A stream that ends inside a message is truncated.
        """
        decoder = ResponseStreamDecoder()
        decoder.feed(invoke_complete()[:-1])
        self.assertRaises(TruncatedStreamError, decoder.finish)


# Property tests.

header_values: dict[int, st.SearchStrategy[object]] = {
    0: st.none(),
    1: st.none(),
    2: st.integers(-(2**7), 2**7 - 1),
    3: st.integers(-(2**15), 2**15 - 1),
    4: st.integers(-(2**31), 2**31 - 1),
    5: st.integers(-(2**63), 2**63 - 1),
    6: st.binary(max_size=40),
    7: st.text(max_size=20),
    8: st.integers(-(2**63), 2**63 - 1),
    9: st.uuids(),
}


def tagged(kind: int, values: st.SearchStrategy[object]) -> st.SearchStrategy[tuple[int, object]]:
    return values.map(lambda value: (kind, value))


def encoded(headers: dict[str, tuple[int, object]], payload: bytes) -> bytes:
    return message([(name, kind, value) for name, (kind, value) in headers.items()], payload)


headers_strategy = st.dictionaries(
    # At most 12 characters of at most 4 UTF-8 bytes: always under 256 bytes.
    st.text(min_size=1, max_size=12),
    st.one_of(*(tagged(kind, values) for kind, values in header_values.items())),
    max_size=6,
)
messages_strategy = st.lists(
    st.builds(encoded, headers_strategy, st.binary(max_size=300)), min_size=1, max_size=6
).map(b"".join)


def lambda_body(chunks: list[bytes]) -> bytes:
    return b"".join(map(payload_chunk, chunks)) + invoke_complete()


lambda_stream = st.lists(st.binary(min_size=1, max_size=200), max_size=8).map(lambda_body)
cuts = st.lists(st.integers(0, 3000), max_size=12)


class PropertyTests(SynchronousTestCase):
    """
    Properties over generated streams, checked against botocore.
    """

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(messages_strategy, cuts)
    def test_anySplit(self, data: bytes, points: list[int]) -> None:
        """
        Every split of a stream decodes to the messages botocore finds in it.
        """
        messages = feed_all(MessageDecoder(), split(data, points))
        self.assertEqual(our_messages(messages), botocore_messages(data))

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(lambda_stream, cuts)
    def test_anySplitEvents(self, data: bytes, points: list[int]) -> None:
        """
        Every split of a Lambda stream gives the same events.
        """
        decoder = ResponseStreamDecoder()
        events = [e for piece in split(data, points) for e in decoder.feed(piece)]
        decoder.finish()
        self.assertEqual(events, events_of(data))

    @settings(derandomize=True, max_examples=150, deadline=None)
    @given(lambda_stream, st.data())
    def test_corruption(self, data: bytes, draw: st.DataObject) -> None:
        """
        Flipping any bit anywhere is a checksum error, for us and for botocore.
        """
        index = draw.draw(st.integers(0, len(data) - 1))
        mask = 1 << draw.draw(st.integers(0, 7))
        corrupted = flip(data, index, mask)
        points = draw.draw(cuts)
        decoder = ResponseStreamDecoder()
        events: list[StreamEvent] = []
        with self.assertRaises(ChecksumMismatchError):
            for piece in split(corrupted, points):
                events.extend(decoder.feed(piece))
        self.assertEqual(events, events_of(data)[: len(events)])
        with self.assertRaises(BotocoreChecksumMismatch):
            botocore_messages(corrupted)

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(lambda_stream, st.data())
    def test_truncation(self, data: bytes, draw: st.DataObject) -> None:
        """
        Any strict prefix of a Lambda stream is reported as truncated.
        """
        end = draw.draw(st.integers(0, len(data) - 1))
        decoder = ResponseStreamDecoder()
        for piece in split(data[:end], draw.draw(cuts)):
            decoder.feed(piece)
        self.assertRaises(TruncatedStreamError, decoder.finish)

    @settings(derandomize=True, max_examples=50, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=5), st.text(max_size=50))
    def test_invokeCompleteJSON(self, chunks: list[bytes], details: str) -> None:
        """
        InvokeComplete's fields survive any JSON string content.
        """
        data = b"".join(map(payload_chunk, chunks)) + invoke_complete("Unhandled", details)
        decoder = ResponseStreamDecoder()
        decoder.feed(data)
        complete = decoder.finish()
        self.assertEqual(complete.error_code, "Unhandled")
        self.assertEqual(complete.error_details, details or None)
