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

_GO_FOLDS = {"\u017f": "s", "\u212a": "k"}
"""The non-ASCII letters whose Unicode simple case folding reaches ASCII ones."""


def _go_fold(key: str) -> str:
    """
    C{key} folded as Go's C{bytes.EqualFold} folds it, for comparing with a
    lower-case ASCII field name.

    ASCII letters fold to lower case, U+017F (long s) and U+212A (Kelvin
    sign) to C{s} and C{k}; any other non-ASCII character stays itself, so
    it matches no field name.
    """
    if key.isascii():
        return key.lower()
    return "".join(_GO_FOLDS.get(c, c.lower() if c.isascii() else c) for c in key)


def _go_fields(document: dict[str, Any]) -> dict[str, object]:
    """
    The values Go's C{encoding/json} would put into fields, by lower-case name.

    Go assigns every matching key in turn, so the last one in the object
    stays.  (A key repeated with the very same spelling counts at its first
    place here, where the JSON parser kept it.)  The keys are folded once
    for all the fields looked up.
    """
    # ASCII keys (nearly all) folded inline: no call per key.
    return {
        (key.lower() if key.isascii() else _go_fold(key)): item for key, item in document.items()
    }


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
    if not isinstance(document, dict):
        return Reply(200, (DEFAULT_CONTENT_TYPE,), payload)
    fields = _go_fields(document)
    if fields.get("type") != REPLY_TYPE:
        return Reply(200, (DEFAULT_CONTENT_TYPE,), payload)

    meta = fields.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise MalformedReply(detail="meta is not an object")
    meta_fields = _go_fields(meta)
    status = meta_fields.get("status")
    # Go's zero value: a ReplyMeta whose Status was never set.
    if status is None or (type(status) is int and status <= 0):
        status = 200
    status = checked_status(status)
    headers = reply_headers(header_lines(meta_fields.get("headers")))
    if not has_header(headers, "content-type"):
        headers = (*headers, DEFAULT_CONTENT_TYPE)

    encoding = fields.get("bodyencoding")
    if encoding not in (None, "", "base64"):
        raise MalformedReply(detail=f"unknown bodyEncoding {encoding!r}")
    data = body_bytes(fields.get("body"), base64_encoded=encoding == "base64")
    return Reply(status, headers, data)
