"""
The caddy-awslambda envelope: ``HTTPJSON-REQ`` in, ``HTTPJSON-REP`` out.

Request additions a function written for the original ignores safely: a
body that is not UTF-8 is sent base64-encoded with ``"bodyEncoding":
"base64"``, and the headers include ``host``, ``x-request-id`` and the
gateway's ``x-forwarded-*``.

A reply is an envelope when, after leading whitespace, it is a JSON object
whose ``type`` is ``HTTPJSON-REP``.  An envelope with a malformed field is a
502, never passed through.  Anything else is the original's raw mode: the
bytes are the body, 200, ``application/json``.
"""

from __future__ import annotations

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
    if not isinstance(document, dict) or document.get("type") != REPLY_TYPE:
        return Reply(200, (DEFAULT_CONTENT_TYPE,), payload)

    meta = document.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise MalformedReply(detail="meta is not an object")
    status = meta.get("status")
    status = 200 if status is None else checked_status(status)
    headers = reply_headers(header_lines(meta.get("headers")))
    if not has_header(headers, "content-type"):
        headers = (*headers, DEFAULT_CONTENT_TYPE)

    encoding = document.get("bodyEncoding")
    if encoding not in (None, "", "base64"):
        raise MalformedReply(detail=f"unknown bodyEncoding {encoding!r}")
    data = body_bytes(document.get("body"), base64_encoded=encoding == "base64")
    return Reply(status, headers, data)
