"""
Checks and conversions every event format shares.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.messages import NOT_PARSED, Headers, Reply
from twisted_lambdagw.core.patterns import HEADER_NAME

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


def load_json(payload: bytes, document: object = NOT_PARSED) -> Any:
    """
    Parse a result payload as JSON, raising ValueError when it is not.

    C{document}, when given, is what C{payload} parsed to already.
    """
    if document is NOT_PARSED:
        return json.loads(payload)
    return document


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dump_json(document: object) -> bytes:
    """
    Serialise an event compactly, as UTF-8.
    """
    return _encode_json(document).encode("utf-8")


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


def checked_status(status: object, *, numeric_string: bool = False) -> int:
    """
    A reply status: an int from 200 to 599 (a 1xx cannot end a response).

    With C{numeric_string}, three ASCII digits in a string count too, as API
    Gateway REST APIs accept them (C{"statusCode": "200"}); ALB and HTTP APIs
    do not.
    """
    if numeric_string and isinstance(status, str) and _STATUS_DIGITS.fullmatch(status):
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise MalformedReply(detail=f"invalid status {status!r}")
    return status


_STATUS_DIGITS = re.compile(r"[0-9]{3}")
_REASON = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_DESCRIPTION_CODE = re.compile(r"([0-9]{3})(?: (.*))?", re.DOTALL)

NO_CONTENT_STATUSES = frozenset({204, 304})
"""Statuses whose replies never carry a body (RFC 9110 sections 15.3.5, 15.4.5)."""


def reason_phrase(description: object, status: int) -> str | None:
    """
    The reason phrase an ALB reply's C{statusDescription} gives, or None.

    ALB writes the description (C{"200 OK"}: the code, one space, the
    reason) into the status line.  The reason is the text after the code;
    a description with a different code than C{statusCode} is ignored, as
    the status is what counts; one without a code is the reason whole.  A
    non-string, or one with CR, LF or another control character (which
    would split the response) or a character beyond Latin-1, fails the reply.
    """
    if description is None:
        return None
    if not isinstance(description, str):
        raise MalformedReply(detail=f"statusDescription is not a string: {description!r}")
    if not _REASON.fullmatch(description):
        raise MalformedReply(detail="statusDescription holds a control character")
    coded = _DESCRIPTION_CODE.fullmatch(description)
    if coded is None:
        reason = description
    elif int(coded.group(1)) != status:
        return None
    else:
        reason = coded.group(2) or ""
    return reason.strip(" \t") or None


def with_default_type(headers: Headers, status: int, content_type: str) -> Headers:
    """
    C{headers} with C{Content-Type: content_type} added if they name none.

    A 204 or 304 gets none: it has no content to describe.
    """
    if status in NO_CONTENT_STATUSES or has_header(headers, "content-type"):
        return headers
    return (*headers, ("Content-Type", content_type))


def reply_headers(lines: Iterable[tuple[str, str]]) -> Headers:
    """
    Drop hop-by-hop headers and Content-Length from a function's headers.
    """
    return tuple((n, v) for n, v in lines if n.lower() not in NOT_FROM_FUNCTION)


def has_header(lines: Iterable[tuple[str, str]], name: str) -> bool:
    lowered = name.lower()
    return any(n.lower() == lowered for n, _ in lines)


# --- What the standard (API Gateway, Function URL, ALB) formats share. ---

ACCOUNT_ID = "000000000000"
"""The account id the events claim: all zeros, which no AWS account has."""

API_ID = "lambdagw"
"""The API id the events claim; never a real API Gateway or Function URL id."""

STAGE = "$default"
"""The stage both API Gateway formats claim, so adapters strip no stage prefix from paths."""

ALB_TEXT_MEDIA_TYPES = frozenset({"application/json", "application/javascript", "application/xml"})
"""Media types, besides C{text/*}, whose bodies ALB sends as text (its documented list)."""

TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xml",
        "application/x-www-form-urlencoded",
    }
)
"""Media types, besides C{text/*} and C{+json}/C{+xml}, whose bodies travel as text."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def is_text_type(content_type: str | None, *, alb: bool = False) -> bool:
    """
    Whether a body of this content type travels as text rather than base64.

    With C{alb}, exactly ALB's documented rule: C{text/*}, C{application/json},
    C{application/javascript} and C{application/xml}.  Otherwise that rule
    plus form bodies and the C{+json}/C{+xml} suffixes.  No content type at
    all means binary.
    """
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/"):
        return True
    if alb:
        return media in ALB_TEXT_MEDIA_TYPES
    return media in TEXT_MEDIA_TYPES or media.endswith(("+json", "+xml"))


def event_body(body: bytes, content_type: str | None, *, alb: bool = False) -> tuple[str, bool]:
    """
    The request body as an event's C{body} string, and its C{isBase64Encoded}.

    Text types (L{is_text_type}) that are valid UTF-8 travel as they are;
    everything else is base64, which every adapter decodes whatever the
    content type says.  An empty body is C{""}; each format decides whether
    that becomes null or is left out.
    """
    if not body:
        return "", False
    if is_text_type(content_type, alb=alb):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def request_time(seconds: float) -> str:
    """
    An event timestamp such as C{04/Mar/2020:19:15:17 +0000}, always in UTC.

    Built by hand: C{strftime("%b")} would follow the process locale.
    """
    t = time.gmtime(seconds)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}"
        f":{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def epoch_millis(seconds: float) -> int:
    """
    Seconds since the epoch as the integer milliseconds events carry.
    """
    return int(seconds * 1000)


def domain_name(host: str) -> str:
    """
    The host name part of a Host header value, without any port.
    """
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def query_pairs(raw_query: str, *, decode: bool) -> list[tuple[str, str]]:
    """
    The key/value pairs of a query string, in order.

    Decoded as API Gateway does (C{+} is a space, percent-escapes are UTF-8),
    or left exactly as sent, which is what ALB does.  A key without C{=} has
    the value C{""}.
    """
    if decode:
        return parse_qsl(raw_query, keep_blank_values=True)
    pairs = []
    for field in raw_query.split("&"):
        if field:
            key, _, value = field.partition("=")
            pairs.append((key, value))
    return pairs


def grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """
    Group key/value pairs by exact key, keeping the order of values.
    """
    result: dict[str, list[str]] = {}
    for key, value in pairs:
        result.setdefault(key, []).append(value)
    return result


def grouped_headers(lines: Iterable[tuple[str, str]], *, lower: bool) -> dict[str, list[str]]:
    """
    Group header lines by name, compared case-insensitively.

    With C{lower} the names are lower-cased; otherwise each group keeps the
    first spelling the client sent.
    """
    result: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in lines:
        folded = name.lower()
        key = folded if lower else spelling.setdefault(folded, name)
        result.setdefault(key, []).append(value)
    return result


def last_values(groups: dict[str, list[str]]) -> dict[str, str]:
    """
    The last value of each group: what single-value event fields keep.
    """
    return {key: values[-1] for key, values in groups.items()}


def request_cookies(header_values: Iterable[str]) -> list[str]:
    """
    Split C{Cookie} header values into one C{name=value} string per cookie.
    """
    return [
        cookie.strip() for value in header_values for cookie in value.split(";") if cookie.strip()
    ]


def load_reply_object(payload: bytes, document: object = NOT_PARSED) -> dict[str, Any]:
    """
    A function result that must be a JSON object, or L{MalformedReply}.
    """
    try:
        document = load_json(payload, document)
    except ValueError:
        raise MalformedReply(detail="result is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedReply(detail="result is not a JSON object")
    return document


def reply_body(document: dict[str, Any]) -> bytes:
    """
    The bytes of a structured reply's C{body}, honouring C{isBase64Encoded}.

    A missing or null body is empty; anything but a string is malformed.
    """
    encoded = document.get("isBase64Encoded")
    if encoded is None:
        encoded = False
    if not isinstance(encoded, bool):
        raise MalformedReply(detail=f"isBase64Encoded is not a boolean: {encoded!r}")
    return body_bytes(document.get("body"), base64_encoded=encoded)


def body_bytes(body: object, *, base64_encoded: bool) -> bytes:
    """
    The bytes of a reply's body field: text as UTF-8, or decoded base64.

    A missing or null body is empty.  Anything but a string, and a string
    that cannot be UTF-8 (a lone surrogate escaped in the JSON), is a
    malformed reply rather than invalid bytes sent to the client.
    """
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedReply(detail="body is not a string")
    if base64_encoded:
        return decode_base64(body)
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedReply(detail="body is not valid Unicode text") from None


def merged_header_lines(document: dict[str, Any]) -> list[tuple[str, str]]:
    """
    A reply's C{headers} and C{multiValueHeaders}, merged as API Gateway does.

    When a name is in both, only the C{multiValueHeaders} values count, so a
    function that fills both with the same headers (Rust C{lambda_http} does)
    gets no duplicates.  Names are compared case-insensitively.
    """
    single = header_lines(document.get("headers"), lists=False)
    multi = header_lines(document.get("multiValueHeaders"))
    in_multi = {name.lower() for name, _ in multi}
    return [line for line in single if line[0].lower() not in in_multi] + multi


def parse_proxy_reply(
    payload: bytes,
    document: object = NOT_PARSED,
    *,
    default_type: str,
    numeric_string: bool = False,
    description: bool = False,
) -> Reply:
    """
    A payload-1.0 style reply (API Gateway REST, ALB), fully validated.

    C{statusCode} is required (a numeric string too with C{numeric_string});
    with C{description}, C{statusDescription} gives the reason phrase.  A
    reply naming no Content-Type gets C{default_type}.
    """
    reply = load_reply_object(payload, document)
    status = checked_status(reply.get("statusCode"), numeric_string=numeric_string)
    reason = reason_phrase(reply.get("statusDescription"), status) if description else None
    headers = with_default_type(reply_headers(merged_header_lines(reply)), status, default_type)
    return Reply(status, headers, reply_body(reply), reason)
