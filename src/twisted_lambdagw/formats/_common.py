"""
Checks and conversions every event format shares.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

from ..errors import MalformedReply
from ..messages import Headers

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that describe one connection, never forwarded either way."""

NOT_FROM_FUNCTION = HOP_BY_HOP | {"content-length"}
"""Reply headers the gateway drops: it computes Content-Length itself."""


def body_text(body: bytes) -> tuple[str, bool]:
    """
    The body as a JSON string, and whether it had to be base64-encoded.

    A body that is valid UTF-8 travels as text; anything else as base64, so
    binary uploads arrive intact.
    """
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def decode_base64(text: str) -> bytes:
    """
    Strictly decode a base64 body, or raise L{MalformedReply}.
    """
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedReply(detail="body is not valid base64") from None


def load_json(payload: bytes) -> Any:
    """
    Parse a result payload as JSON, raising ValueError when it is not.
    """
    return json.loads(payload)


def dump_json(document: object) -> bytes:
    """
    Serialise an event compactly, as UTF-8.
    """
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def checked_header(name: object, value: object) -> tuple[str, str]:
    """
    One reply header line, validated, or L{MalformedReply}.

    A name that is not an HTTP token or a value with CR, LF or another control
    character would let a function split the response, so it fails the reply.
    """
    if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
        raise MalformedReply(detail=f"invalid header name {name!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MalformedReply(detail=f"header {name!r} value is not a string: {value!r}")
    text = str(value)
    if not HEADER_VALUE.fullmatch(text):
        raise MalformedReply(detail=f"header {name!r} value holds a control character")
    return name, text


def header_lines(document: object, *, lists: bool = True) -> list[tuple[str, str]]:
    """
    Validate a reply's header object: name to a string (or a list of strings).
    """
    if document is None:
        return []
    if not isinstance(document, dict):
        raise MalformedReply(detail="headers is not an object")
    lines: list[tuple[str, str]] = []
    for name, value in document.items():
        values = value if lists and isinstance(value, list) else [value]
        lines.extend(checked_header(name, v) for v in values)
    return lines


def checked_status(status: object) -> int:
    """
    A reply status: an int from 200 to 599 (a 1xx cannot end a response).
    """
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise MalformedReply(detail=f"invalid status {status!r}")
    return status


def reply_headers(lines: Iterable[tuple[str, str]]) -> Headers:
    """
    Drop hop-by-hop headers and Content-Length from a function's headers.
    """
    return tuple((n, v) for n, v in lines if n.lower() not in NOT_FROM_FUNCTION)


def has_header(lines: Iterable[tuple[str, str]], name: str) -> bool:
    lowered = name.lower()
    return any(n.lower() == lowered for n, _ in lines)
