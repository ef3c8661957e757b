"""
An incremental decoder for ``application/vnd.amazon.eventstream`` bodies.

InvokeWithResponseStream answers with a sequence of binary event-stream
messages (research/lambda-protocol.md §2.3, §2.4).  The gateway receives them
in whatever pieces the network delivers and must forward each payload chunk
as soon as it is complete, so this module decodes incrementally: feed it
bytes, get back the messages that are now complete.

Two layers:

- L{MessageDecoder} knows only the framing: lengths, both CRC32 checksums,
  the ten header types and the size limits.  It keeps one ``bytearray`` and
  deletes consumed bytes from its front, so feeding a large message in many
  small pieces costs linear time (botocore's ``EventStreamBuffer`` grows a
  ``bytes`` with ``+=``, which is quadratic in that case).
- L{ResponseStreamDecoder} knows Lambda's events: it turns messages into
  L{PayloadChunk} and L{InvokeComplete} values and raises L{LambdaStreamError}
  for the stream-level ``error`` and ``exception`` messages.

Every failure is an L{InvokeFailed} (502): L{EventStreamError} when the
stream cannot be decoded and so cannot be trusted, L{LambdaStreamError} when
Lambda itself reported an error in it.  A decoder that has failed stays
failed: later calls raise the same error again.  When one call completes
several messages and a later one is bad, that call raises and returns none
of them: before the first byte reaches the client that is a clean 502, and
after it the response is aborted anyway.

This module is pure: no reactor, no I/O, no logging.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Final

from .errors import InvokeFailed

MAX_HEADERS_LENGTH: Final = 128 * 1024
"""Largest headers section of one message (the limit botocore also applies)."""

MAX_PAYLOAD_LENGTH: Final = 24 * 1024 * 1024
"""Largest payload of one message (the limit botocore also applies)."""

_PRELUDE = struct.Struct("!III")
_PRELUDE_LENGTH: Final = 12
_OVERHEAD: Final = 16
"""The prelude (12 bytes) and the message CRC (4 bytes)."""

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_FIXED = {
    2: struct.Struct("!b"),
    3: struct.Struct("!h"),
    4: struct.Struct("!i"),
    5: struct.Struct("!q"),
    8: struct.Struct("!q"),
}


class EventStreamError(InvokeFailed):
    """
    The response stream from Lambda is not a valid event stream: a 502.
    """

    message = "malformed response stream from Lambda"

    def __init__(self, detail: str, *, code: str = "MalformedEventStream") -> None:
        super().__init__(detail=detail, code=code)


class ChecksumMismatchError(EventStreamError):
    """
    A prelude or message CRC32 does not match the bytes it covers.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, code="ChecksumMismatchError")


class TruncatedStreamError(EventStreamError):
    """
    The stream ended inside a message, or before ``InvokeComplete``.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, code="TruncatedStreamError")


class LambdaStreamError(InvokeFailed):
    """
    Lambda reported an error inside the stream (an ``error`` or ``exception``
    message): a 502.

    ``code`` is ``:error-code`` or ``:exception-type``; ``error_message`` is
    what Lambda said about it, for the log only.
    """

    message = "function invocation failed"

    def __init__(self, code: str, error_message: str) -> None:
        super().__init__(detail=f"{code}: {error_message}", code=code)
        self.error_message = error_message


@dataclass(frozen=True, slots=True)
class Timestamp:
    """
    The value of a timestamp header (type 8): milliseconds since the epoch.

    Kept as an integer, not a datetime, because any int64 is valid on the
    wire and most of them are outside the range datetime can represent.
    """

    milliseconds: int


HeaderValue = bool | int | bytes | str | Timestamp | uuid.UUID
"""A decoded header: types 0/1 bool, 2-5 int, 6 bytes, 7 str, 8 Timestamp, 9 UUID."""


@dataclass(frozen=True, slots=True)
class Message:
    """
    One decoded, checksum-verified event-stream message.
    """

    headers: dict[str, HeaderValue]
    payload: bytes


class MessageDecoder:
    """
    Decode event-stream messages from bytes fed in arbitrary pieces.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._total = 0
        """Length of the message at the front of the buffer, once its prelude is checked."""
        self._failure: InvokeFailed | None = None

    @property
    def pending(self) -> int:
        """
        How many bytes of an incomplete message are buffered.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """
        Add bytes from the stream; return every message they complete, in order.

        Raises L{EventStreamError} for a bad checksum, length or header.
        """
        if self._failure is not None:
            raise self._failure
        buffer = self._buffer
        buffer += data
        if len(buffer) < (self._total or _PRELUDE_LENGTH):
            return []  # the common case while a large payload arrives
        messages: list[Message] = []
        offset = 0
        try:
            while True:
                available = len(buffer) - offset
                if not self._total:
                    if available < _PRELUDE_LENGTH:
                        break
                    self._total = _check_prelude(buffer, offset)
                if available < self._total:
                    break
                messages.append(_decode_message(buffer, offset, self._total))
                offset += self._total
                self._total = 0
        except EventStreamError as e:
            self._failure = e
            raise
        finally:
            # Deleting from the front of a bytearray only moves its start
            # pointer, so this stays cheap however large the buffer is.
            del buffer[:offset]
        return messages

    def finish(self) -> None:
        """
        The stream ended: raise L{TruncatedStreamError} if a message is incomplete.
        """
        if self._failure is not None:
            raise self._failure
        if self._buffer:
            self._failure = TruncatedStreamError(
                f"stream ended with {len(self._buffer)} bytes of an incomplete message"
            )
            raise self._failure


def _check_prelude(buffer: bytearray, offset: int) -> int:
    """
    Validate the prelude at C{offset}; return the message's total length.
    """
    total, headers_length, crc = _PRELUDE.unpack_from(buffer, offset)
    with memoryview(buffer) as view:
        computed = zlib.crc32(view[offset : offset + 8])
    if computed != crc:
        raise ChecksumMismatchError(f"prelude CRC {crc:#010x} != computed {computed:#010x}")
    if headers_length > MAX_HEADERS_LENGTH:
        raise EventStreamError(
            f"headers length {headers_length} exceeds the maximum of {MAX_HEADERS_LENGTH}"
        )
    payload_length = total - headers_length - _OVERHEAD
    if payload_length < 0:
        raise EventStreamError(
            f"total length {total} cannot hold {headers_length} bytes of headers"
        )
    if payload_length > MAX_PAYLOAD_LENGTH:
        raise EventStreamError(
            f"payload length {payload_length} exceeds the maximum of {MAX_PAYLOAD_LENGTH}"
        )
    return int(total)


def _decode_message(buffer: bytearray, offset: int, total: int) -> Message:
    """
    Check the message CRC of the complete message at C{offset} and decode it.
    """
    end = offset + total
    (expected,) = _U32.unpack_from(buffer, end - 4)
    (headers_length,) = _U32.unpack_from(buffer, offset + 4)
    headers_start = offset + _PRELUDE_LENGTH
    payload_start = headers_start + headers_length
    with memoryview(buffer) as view:
        computed = zlib.crc32(view[offset : end - 4])
        payload = bytes(view[payload_start : end - 4])
    if computed != expected:
        raise ChecksumMismatchError(f"message CRC {expected:#010x} != computed {computed:#010x}")
    return Message(_decode_headers(buffer, headers_start, payload_start), payload)


def _decode_headers(buffer: bytearray, start: int, end: int) -> dict[str, HeaderValue]:
    """
    Decode the headers section C{buffer[start:end]}; every byte must belong to a header.
    """
    headers: dict[str, HeaderValue] = {}
    position = start

    def take(length: int) -> int:
        nonlocal position
        here = position
        position += length
        if position > end:
            raise EventStreamError("a header runs past the end of the headers section")
        return here

    while position < end:
        name_length = buffer[take(1)]
        if not name_length:
            raise EventStreamError("a header has an empty name")
        at = take(name_length)
        name = _utf8(buffer[at : at + name_length], "header name")
        kind = buffer[take(1)]
        value: HeaderValue
        if kind == 0:
            value = True
        elif kind == 1:
            value = False
        elif kind in _FIXED:
            fixed = _FIXED[kind]
            (number,) = fixed.unpack_from(buffer, take(fixed.size))
            value = Timestamp(number) if kind == 8 else number
        elif kind in (6, 7):
            (length,) = _U16.unpack_from(buffer, take(2))
            at = take(length)
            raw = bytes(buffer[at : at + length])
            value = raw if kind == 6 else _utf8(raw, f"header {name!r}")
        elif kind == 9:
            at = take(16)
            value = uuid.UUID(bytes=bytes(buffer[at : at + 16]))
        else:
            raise EventStreamError(f"header {name!r} has unknown type {kind}")
        if name in headers:
            raise EventStreamError(f"duplicate header {name!r}")
        headers[name] = value
    return headers


def _utf8(raw: bytes | bytearray, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EventStreamError(f"{what} is not valid UTF-8") from None


# Lambda's events on top of the framing.


@dataclass(frozen=True, slots=True)
class PayloadChunk:
    """
    The next bytes the function streamed, in order.
    """

    payload: bytes


@dataclass(frozen=True, slots=True)
class InvokeComplete:
    """
    The last event of a stream: whether the function failed, and its log tail.

    ``error_code`` is None when the function succeeded; otherwise it failed,
    possibly after some chunks were already sent.  ``error_details`` and
    ``log_result`` (base64, only when the log tail was asked for) are for
    the log only.
    """

    error_code: str | None = None
    error_details: str | None = None
    log_result: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """
    An event type this gateway does not know, passed up so it can be logged.
    """

    event_type: str


StreamEvent = PayloadChunk | InvokeComplete | UnknownEvent


class ResponseStreamDecoder:
    """
    Decode an InvokeWithResponseStream body into Lambda's events.

    Empty payload chunks are dropped, so every L{PayloadChunk} carries at
    least one byte.  ``InvokeComplete`` must be the last message: anything
    after it is an error, and so is a stream that ends without it
    (L{finish}).
    """

    def __init__(self) -> None:
        self._messages = MessageDecoder()
        self.complete: InvokeComplete | None = None
        """The InvokeComplete event, once it has arrived."""

    def feed(self, data: bytes) -> list[StreamEvent]:
        """
        Add bytes from the HTTP body; return the events they complete.

        Raises L{EventStreamError} for a malformed stream and
        L{LambdaStreamError} for an error message from Lambda.
        """
        events: list[StreamEvent] = []
        try:
            for message in self._messages.feed(data):
                if self.complete is not None:
                    raise EventStreamError("a message arrived after InvokeComplete")
                event = _event(message)
                if isinstance(event, PayloadChunk) and not event.payload:
                    continue
                if isinstance(event, InvokeComplete):
                    self.complete = event
                events.append(event)
        except InvokeFailed as error:
            self._messages._failure = error  # later calls raise it again
            raise
        return events

    def finish(self) -> InvokeComplete:
        """
        The HTTP body ended; return the InvokeComplete event.

        Raises L{TruncatedStreamError} when the stream stopped inside a message or
        before InvokeComplete.
        """
        self._messages.finish()
        if self.complete is None:
            error = TruncatedStreamError("stream ended without InvokeComplete")
            self._messages._failure = error
            raise error
        return self.complete


def _event(message: Message) -> StreamEvent:
    """
    The Lambda event one message carries; raises for errors and nonsense.
    """
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "event":
        event_type = headers.get(":event-type")
        if event_type == "PayloadChunk":
            return PayloadChunk(message.payload)
        if event_type == "InvokeComplete":
            return _invoke_complete(message.payload)
        if isinstance(event_type, str):
            return UnknownEvent(event_type)
        raise EventStreamError("an event message has no :event-type")
    if kind == "error":
        raise LambdaStreamError(
            _text(headers.get(":error-code"), "UnknownError"),
            _text(headers.get(":error-message"), ""),
        )
    if kind == "exception":
        raise LambdaStreamError(
            _text(headers.get(":exception-type"), "UnknownException"),
            _exception_message(message.payload),
        )
    raise EventStreamError(f"unknown :message-type {kind!r}")


def _text(value: HeaderValue | None, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _invoke_complete(payload: bytes) -> InvokeComplete:
    """
    Parse InvokeComplete's JSON payload; an empty payload means success.
    """
    if not payload.strip():
        return InvokeComplete()
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        raise EventStreamError("InvokeComplete payload is not JSON") from None
    if not isinstance(document, dict):
        raise EventStreamError("InvokeComplete payload is not a JSON object")
    fields: list[str | None] = []
    for key in ("ErrorCode", "ErrorDetails", "LogResult"):
        value = document.get(key)
        if value is not None and not isinstance(value, str):
            raise EventStreamError(f"InvokeComplete {key} is not a string")
        fields.append(value or None)
    return InvokeComplete(*fields)


def _exception_message(payload: bytes) -> str:
    """
    The message of an ``exception`` message's JSON payload, as botocore reads it.
    """
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return payload.decode("utf-8", "replace")
    if isinstance(document, dict):
        for key in ("message", "Message"):
            if isinstance(document.get(key), str):
                return str(document[key])
    return payload.decode("utf-8", "replace")
