"""
HTTP API and Function URL events, payload format 2.0 (C{format = apigw-v2}).

The Function URL flavour: C{routeKey} and C{stage} are C{$default},
header names are lower-case and repeated headers comma-joined, the request's
cookies are split into C{cookies} and left out of C{headers} (apig-wsgi
would otherwise see them twice), C{rawPath} and C{requestContext.http.path}
are the path as received, still percent-encoded, and C{rawQueryString} has
no C{?}.  C{accountId} and C{apiId} are the local placeholders; an
authenticated gateway user is C{requestContext.authorizer.lambda.principalId}.

Keys AWS leaves out when they have nothing to say are left out, not null:
C{cookies} without cookies, C{queryStringParameters} without a query,
C{body} without a body, C{requestContext.authorizer} when no user
authenticated, and C{authentication}, C{pathParameters} and
C{stageVariables} always (no client certificates, path templates or stages
here).

A result with C{statusCode} is a structured reply: C{headers} hold string
values, each C{cookies} entry becomes its own C{Set-Cookie}, and a reply
naming no Content-Type is C{application/json}, as from a Function URL.  Any
other valid JSON result is the body of a 200 C{application/json} reply,
verbatim: a string keeps its quotes.
"""

from __future__ import annotations

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply

from ._common import (
    ACCOUNT_ID,
    API_ID,
    STAGE,
    checked_header,
    checked_status,
    domain_name,
    dump_json,
    epoch_millis,
    event_body,
    grouped,
    grouped_headers,
    header_lines,
    load_json,
    query_pairs,
    reply_body,
    reply_headers,
    request_cookies,
    request_time,
    with_default_type,
)

VERSION = "2.0"
ROUTE_KEY = "$default"
INFERRED_CONTENT_TYPE = ("content-type", "application/json")
DEFAULT_CONTENT_TYPE = "application/json"
"""What a Function URL answers with when a structured reply names no Content-Type."""


def build(request: IncomingRequest) -> bytes:
    """
    The payload 2.0 event for one request.
    """
    headers = grouped_headers(request.headers, lower=True)
    cookies = request_cookies(headers.pop("cookie", []))
    query = grouped(query_pairs(request.raw_query, decode=True))
    body, encoded = event_body(request.body, request.header("content-type"))
    domain = domain_name(request.host)
    context: dict[str, object] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.function_raw_path,
            "protocol": request.protocol,
            "sourceIp": request.remote_addr,
            "userAgent": request.header("user-agent") or "",
        },
        "requestId": request.request_id,
        "routeKey": ROUTE_KEY,
        "stage": STAGE,
        "time": request_time(request.time),
        "timeEpoch": epoch_millis(request.time),
    }
    if request.authorizer is not None:
        context["authorizer"] = request.authorizer
    elif request.user is not None:
        context["authorizer"] = {"lambda": {"principalId": request.user}}
    event: dict[str, object] = {
        "version": VERSION,
        "routeKey": ROUTE_KEY,
        "rawPath": request.function_raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = {name: ",".join(values) for name, values in headers.items()}
    if query:
        event["queryStringParameters"] = {key: ",".join(values) for key, values in query.items()}
    event["requestContext"] = context
    if body:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return dump_json(event)


def parse(payload: bytes, document: object = NOT_PARSED) -> Reply:
    """
    The reply a payload 2.0 result means; L{MalformedReply} when it means none.
    """
    try:
        document = load_json(payload, document)
    except ValueError:
        raise MalformedReply(detail="result is not JSON") from None
    if not isinstance(document, dict) or "statusCode" not in document:
        return Reply(200, (INFERRED_CONTENT_TYPE,), payload)

    status = checked_status(document["statusCode"])
    lines = header_lines(document.get("headers"), lists=False)
    cookies = document.get("cookies")
    if cookies is None:
        cookies = []
    if not isinstance(cookies, list):
        raise MalformedReply(detail="cookies is not a list")
    lines.extend(checked_header("Set-Cookie", cookie) for cookie in cookies)
    headers = with_default_type(reply_headers(lines), status, DEFAULT_CONTENT_TYPE)
    return Reply(status, headers, reply_body(document))
