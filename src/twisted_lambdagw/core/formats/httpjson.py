"""
The caddy-awslambda envelope: C{HTTPJSON-REQ} in, C{HTTPJSON-REP} out.

Request additions a function written for the original ignores safely: a
body that is not UTF-8 is sent base64-encoded with C{"bodyEncoding":
"base64"}, and the headers include C{host}, C{x-request-id} and the
gateway's C{x-forwarded-*}.

A reply is an envelope when, after leading whitespace, it is a JSON object
whose C{type} is C{HTTPJSON-REP}.  Its keys are matched as the original's
Go C{encoding/json} matched them, case-insensitively (C{Type}, C{Meta},
C{Status}, C{Headers}, C{Body}, C{BodyEncoding}: what a Go struct
without JSON tags marshals to), the last of several spellings winning.  A C{status} of
0, below 0 or missing is 200, as in the original.  An envelope with a
malformed field is a 502, never passed through.  Anything else is the
original's raw mode: the bytes are the body, 200, C{application/json}.
"""

from __future__ import annotations

from typing import Any

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply, group_headers

from ._common import (
    body_bytes,
    body_text,
    checked_status,
    dump_json,
    has_header,
    header_lines,
    load_json,
    reply_headers,
)

REQUEST_TYPE = "HTTPJSON-REQ"
REPLY_TYPE = "HTTPJSON-REP"
DEFAULT_CONTENT_TYPE = ("Content-Type", "application/json")

_GO_FOLDS = {"s": "sS\u017f", "k": "kK\u212a"}
"""The letters whose Unicode simple case folding reaches beyond ASCII."""


def _go_name_matches(key: str, name: str) -> bool:
    """
    Whether Go's C{encoding/json} would decode C{key} into field C{name}.

    It folds case as C{bytes.EqualFold} does: ASCII letters either case,
    and the two non-ASCII letters that fold to ASCII ones (U+017F long s,
    U+212A Kelvin sign).  C{name} is an ASCII field name.
    """
    if len(key) != len(name):
        return False
    for got, want in zip(key, name, strict=True):
        lowered = want.lower()
        if got != want and got not in _GO_FOLDS.get(lowered, lowered + lowered.upper()):
            return False
    return True


def _go_field(document: dict[str, Any], name: str) -> object:
    """
    The value Go's C{encoding/json} would put into the field tagged C{name}.

    Go assigns every matching key in turn, so the last one in the object
    stays.  (A key repeated with the very same spelling counts at its first
    place here, where the JSON parser kept it.)
    """
    value: object = None
    for key, item in document.items():
        if _go_name_matches(key, name):
            value = item
    return value


def build(request: IncomingRequest) -> bytes:
    """
    The HTTPJSON-REQ event for one request.
    """
    body, encoded = body_text(request.body)
    event: dict[str, object] = {
        "type": REQUEST_TYPE,
        "meta": {
            "method": request.method,
            "path": request.function_path,
            "query": request.raw_query,
            "host": request.host,
            "proto": request.protocol,
            "headers": group_headers(request.headers),
            **({} if request.authorizer is None else {"authorizer": request.authorizer}),
        },
        "body": body,
    }
    if encoded:
        event["bodyEncoding"] = "base64"
    return dump_json(event)


def parse(payload: bytes, document: object = NOT_PARSED) -> Reply:
    """
    The reply a function's result means; L{MalformedReply} for a bad envelope.
    """
    if document is NOT_PARSED:
        # Only an object can be an envelope: anything else is a body as it is.
        stripped = payload.lstrip()
        document = None
        if stripped.startswith(b"{"):
            try:
                document = load_json(stripped)
            except ValueError:
                document = None
    if not isinstance(document, dict) or _go_field(document, "type") != REPLY_TYPE:
        return Reply(200, (DEFAULT_CONTENT_TYPE,), payload)

    meta = _go_field(document, "meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise MalformedReply(detail="meta is not an object")
    status = _go_field(meta, "status")
    # Go's zero value: a ReplyMeta whose Status was never set.
    if status is None or (type(status) is int and status <= 0):
        status = 200
    status = checked_status(status)
    headers = reply_headers(header_lines(_go_field(meta, "headers")))
    if not has_header(headers, "content-type"):
        headers = (*headers, DEFAULT_CONTENT_TYPE)

    encoding = _go_field(document, "bodyEncoding")
    if encoding not in (None, "", "base64"):
        raise MalformedReply(detail=f"unknown bodyEncoding {encoding!r}")
    data = body_bytes(_go_field(document, "body"), base64_encoded=encoding == "base64")
    return Reply(status, headers, data)
