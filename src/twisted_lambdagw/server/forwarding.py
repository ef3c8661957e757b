"""
What the gateway reads of a request before invoking: its id, its path in
normal form, and the headers a function sees (the client's, less the
hop-by-hop ones and those only the gateway sets, plus the gateway's own).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from twisted.web.http_headers import Headers
from twisted.web.server import Request

from twisted_lambdagw.core.errors import BadRequest
from twisted_lambdagw.core.formats._common import HOP_BY_HOP
from twisted_lambdagw.core.routing import normal_path
from twisted_lambdagw.invokers.base import InvocationType
from twisted_lambdagw.net.headers import raw_values

REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PRINTABLE_ASCII = re.compile(rb"[\x20-\x7e]+")
GATEWAY_SET = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-request-id",
        "x-authenticated-user",
    }
)
"""Request headers only the gateway sets: a client's values never reach a function."""


class RandomIds:
    """
    Random request ids in the text form of a version 4 UUID.

    Each is 122 bits from the operating system's random source, as with
    C{uuid.uuid4()}, but read 4 KB at a time and formatted directly: a
    third of the cost.  The buffer is dropped in a forked child, so parent
    and child never hand out the same ids.
    """

    _BATCH = 4096

    def __init__(self) -> None:
        self._random = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._random = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at + 16 > len(self._random):
            self._random = os.urandom(self._BATCH)
            at = 0
        self._at = at + 16
        h = self._random[at : at + 16].hex()
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


new_request_id = RandomIds()
"""A new random request id; unique per process and across processes."""


def checked_path(request: Request) -> tuple[str, str]:
    """
    The request path in normal form and decoded (L{normal_path}), or L{BadRequest}.

    The URI must be ASCII and its query valid UTF-8 once decoded; the path
    is put in normal form, so that routes, the health and metrics paths and
    the function's name are all read from one spelling of it.
    """
    try:
        uri = request.uri.decode("ascii")
        raw_path = request.path.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request URI is not ASCII") from None
    normal = normal_path(raw_path)
    _, _, query = uri.partition("?")
    if "%" in query:
        try:
            unquote_to_bytes(query.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("request query is not valid UTF-8") from None
    return normal


def invocation_type(value: str) -> InvocationType:
    return "Event" if value == "Event" else "RequestResponse"


def trace_id(headers: Headers) -> str | None:
    """
    The client's X-Amzn-Trace-Id, for Lambda (X-Ray), if it is printable ASCII.

    X-Ray's header never holds anything else; other bytes are not passed on
    to Lambda (the function still sees the header in its event).
    """
    values = raw_values(headers, b"x-amzn-trace-id")
    if values and _PRINTABLE_ASCII.fullmatch(values[-1]):
        return values[-1].decode("ascii")
    return None


def last_text(headers: Headers, name: bytes) -> str | None:
    """
    The last value of the request header C{name} (lower-case), as L{text}, or None.
    """
    values = raw_values(headers, name)
    return text(values[-1]) if values else None


def text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_NAME_CACHE_SIZE = 1000
_CACHED_NAME_LENGTH = 64
_name_texts: dict[bytes, tuple[str, str]] = {}
"""Header names as text and lower-cased, by the bytes the headers keep them as."""


def _name_text(raw_name: bytes) -> tuple[str, str]:
    """
    C{raw_name} as L{text} and lower-cased; C{("", "")} for a name with an
    underscore, which is never forwarded.

    Remembered for the names seen first (bounded in count and size: the
    names clients send are not ours to choose), so a request's usual
    headers are not decoded and lower-cased again on every request.
    """
    name = text(raw_name)
    known = ("", "") if "_" in name else (name, name.lower())
    if len(_name_texts) < _NAME_CACHE_SIZE and len(raw_name) <= _CACHED_NAME_LENGTH:
        _name_texts[raw_name] = known
    return known


def dropped_headers(gateway_headers: Sequence[tuple[str, str]]) -> frozenset[str]:
    """
    The request headers (lower-cased) never passed on as the client sent them:
    hop-by-hop headers, Content-Length, and those the gateway sets itself.
    """
    return frozenset(
        HOP_BY_HOP
        | GATEWAY_SET
        | {"content-length"}
        | {name.lower() for name, _ in gateway_headers}
    )


def forwarded_headers(
    request: Request,
    body: bytes,
    gateway_headers: Sequence[tuple[str, str]],
    dropped: frozenset[str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """
    The request headers a function sees.

    Hop-by-hop headers (and any the Connection header names) are dropped;
    Content-Length is recomputed; the gateway's own headers and the route's
    C{header_upstream} replace whatever the client sent under those names.
    C{dropped} is L{dropped_headers} of the same header names, if known.

    A name with an underscore is dropped too, as nginx does by default
    (C{underscores_in_headers off}): WSGI and CGI read C{_} and C{-}
    alike, so C{X_Authenticated_User} would reach a Flask app as the
    gateway's own C{X-Authenticated-User}.
    """
    if dropped is None:
        dropped = dropped_headers(gateway_headers)
    raw = request.requestHeaders
    connection = raw_values(raw, b"connection")
    if connection:
        dropped = dropped | {
            token.strip().lower() for value in connection for token in text(value).split(",")
        }
    headers: list[tuple[str, str]] = []
    names = _name_texts
    for raw_name, values in raw.getAllRawHeaders():
        known = names.get(raw_name)
        if known is None:
            known = _name_text(raw_name)
        name, lowered = known
        if name and lowered not in dropped:
            for raw_value in values:
                headers.append((name, text(raw_value)))
    if body or request.method in (b"POST", b"PUT", b"PATCH"):
        headers.append(("Content-Length", str(len(body))))
    by_name: dict[str, tuple[str, str]] = {}
    for name, value in gateway_headers:
        by_name[name.lower()] = (name, value)
    headers.extend(by_name.values())
    return tuple(headers)
