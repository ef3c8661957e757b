"""
A small event-stream encoder for tests, written apart from the decoder.

It builds frames from the field list in research/lambda-protocol.md §2.3
with ``binascii.crc32`` (the decoder uses ``zlib``), so a mistake in the
decoder is not repeated here.  The low-level L{frame} takes explicit length
overrides, so tests can build invalid frames too.
"""

from __future__ import annotations

import binascii
import json
import struct
import uuid
from collections.abc import Sequence

HeaderSpec = tuple[str, int, object]
"""(name, wire type 0-9, value) of one header."""


def _crc(data: bytes) -> int:
    return binascii.crc32(data) & 0xFFFFFFFF


def header_bytes(name: str, kind: int, value: object) -> bytes:
    """
    One encoded header of the given wire type.
    """
    raw_name = name.encode("utf-8")
    out = struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">B", kind)
    if kind in (0, 1):
        return out
    if kind in (2, 3, 4, 5, 8):
        assert isinstance(value, int)
        code = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}[kind]
        return out + struct.pack(code, value)
    if kind in (6, 7):
        if isinstance(value, str):
            value = value.encode("utf-8")
        assert isinstance(value, bytes)
        return out + struct.pack(">H", len(value)) + value
    if kind == 9:
        raw = value.bytes if isinstance(value, uuid.UUID) else value
        assert isinstance(raw, bytes) and len(raw) == 16
        return out + raw
    raise ValueError(f"no such header type {kind}")


def prelude(total_length: int, headers_length: int) -> bytes:
    """
    Only the 12-byte prelude, with a valid CRC for whatever lengths it declares.
    """
    lengths = struct.pack(">II", total_length, headers_length)
    return lengths + struct.pack(">I", _crc(lengths))


def frame(
    headers: bytes,
    payload: bytes,
    *,
    total_length: int | None = None,
    headers_length: int | None = None,
) -> bytes:
    """
    A complete message around already-encoded headers, with valid CRCs.
    """
    total = len(headers) + len(payload) + 16 if total_length is None else total_length
    declared = len(headers) if headers_length is None else headers_length
    body = prelude(total, declared) + headers + payload
    return body + struct.pack(">I", _crc(body))


def message(headers: Sequence[HeaderSpec], payload: bytes = b"") -> bytes:
    """
    A message with the given headers and payload.
    """
    return frame(b"".join(header_bytes(*h) for h in headers), payload)


def event(event_type: str, payload: bytes, content_type: str) -> bytes:
    """
    A Lambda ``event`` message, with the headers Lambda's emulators send.
    """
    return message(
        [
            (":event-type", 7, event_type),
            (":content-type", 7, content_type),
            (":message-type", 7, "event"),
        ],
        payload,
    )


def payload_chunk(data: bytes) -> bytes:
    """
    A ``PayloadChunk`` event carrying C{data}.
    """
    return event("PayloadChunk", data, "application/octet-stream")


def invoke_complete(
    error_code: str | None = None,
    error_details: str | None = None,
    log_result: str | None = None,
) -> bytes:
    """
    An ``InvokeComplete`` event; only the fields given are in its JSON.
    """
    document = {
        key: value
        for key, value in (
            ("ErrorCode", error_code),
            ("ErrorDetails", error_details),
            ("LogResult", log_result),
        )
        if value is not None
    }
    return event("InvokeComplete", json.dumps(document).encode(), "application/json")


def error_message(code: str, text: str) -> bytes:
    """
    A stream-level ``error`` message.
    """
    return message(
        [(":message-type", 7, "error"), (":error-code", 7, code), (":error-message", 7, text)]
    )


def exception_message(exception_type: str, text: str) -> bytes:
    """
    A stream-level ``exception`` message with a JSON payload.
    """
    return message(
        [
            (":message-type", 7, "exception"),
            (":exception-type", 7, exception_type),
            (":content-type", 7, "application/json"),
        ],
        json.dumps({"message": text}).encode(),
    )


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    """
    C{data} with the bits of C{mask} flipped in the byte at C{index}.
    """
    corrupted = bytearray(data)
    corrupted[index] ^= mask
    return bytes(corrupted)
