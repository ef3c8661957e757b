"""
The replies the resource writes itself (health, errors, the 202 of an
asynchronous invocation) and L{write_reply}, which writes any reply once.
"""

from __future__ import annotations

import json

from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from twisted_lambdagw.core.errors import GatewayError
from twisted_lambdagw.core.formats._common import NO_CONTENT_STATUSES
from twisted_lambdagw.core.messages import Reply
from twisted_lambdagw.invokers.base import InvokeResult

JSON_TYPE = ("Content-Type", "application/json")


def health_reply(draining: bool) -> Reply:
    """
    200 while serving, 503 while draining, so load balancers stop sending.
    """
    if draining:
        return Reply(503, (JSON_TYPE,), b'{"status":"draining"}')
    return Reply(200, (JSON_TYPE,), b'{"status":"serving"}')


def error_reply(error: GatewayError, request_id: str) -> Reply:
    """
    The JSON error response for a failure; it never holds internal details.
    """
    body = json.dumps({"error": error.message, "request_id": request_id}).encode("utf-8")
    return Reply(error.status, (JSON_TYPE, *error.response_headers()), body)


def accepted_reply(request_id: str, result: InvokeResult) -> Reply:
    """
    The 202 for an asynchronous (C{Event}) invocation Lambda accepted.
    """
    document = {"request_id": request_id, "aws_request_id": result.aws_request_id}
    return Reply(202, (JSON_TYPE,), json.dumps(document).encode("utf-8"))


def close_after(request: Request) -> None:
    """
    Make an HTTP/1.x connection close once this response is written.

    HTTP/2 has no such header: its streams end with the connection.
    """
    channel = request.channel
    if isinstance(channel, HTTPChannel):
        channel.persistent = False
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])


def write_reply(request: Request, reply: Reply, request_id: str) -> None:
    """
    Write a validated reply in one go, with a computed Content-Length.

    A 204 or 304 goes out with neither body nor Content-Length (RFC 9110
    sections 8.6, 15.3.5 and 15.4.5); a HEAD answer with the Content-Length
    a GET would have had but no body.  No Content-Type is ever made up here:
    each format has put its own default in the reply (twisted.web's would
    be text/html).
    """
    request.defaultContentType = None
    if reply.reason is None:
        request.setResponseCode(reply.status)
    else:
        request.setResponseCode(reply.status, reply.reason.encode("latin-1"))
    headers = request.responseHeaders
    for name, value in reply.headers:
        headers.addRawHeader(name.encode("ascii"), value.encode("utf-8"))
    headers.setRawHeaders(b"x-request-id", [request_id.encode("ascii")])
    if reply.status in NO_CONTENT_STATUSES:
        headers.removeHeader(b"content-length")
    else:
        headers.setRawHeaders(b"content-length", [str(len(reply.body)).encode("ascii")])
        if reply.body and request.method != b"HEAD":
            request.write(reply.body)
    request.finish()


def body_length(request: Request, reply: Reply) -> int:
    """
    How many body bytes L{write_reply} sends for C{reply}.
    """
    if request.method == b"HEAD" or reply.status in NO_CONTENT_STATUSES:
        return 0
    return len(reply.body)
