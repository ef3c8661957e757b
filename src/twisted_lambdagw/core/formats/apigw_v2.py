"""
HTTP API and Function URL events, payload format 2.0 (``format = apigw-v2``).

The Function URL flavour: ``routeKey`` and ``stage`` are ``$default``,
header names are lower-case and repeated headers comma-joined, the request's
cookies are split into ``cookies`` and left out of ``headers`` (apig-wsgi
would otherwise see them twice), ``rawPath`` and ``requestContext.http.path``
are the path as received, still percent-encoded, and ``rawQueryString`` has
no ``?``.  ``accountId`` and ``apiId`` are the local placeholders; an
authenticated gateway user is ``requestContext.authorizer.lambda.principalId``.

A result with ``statusCode`` is a structured reply: ``headers`` hold string
values, each ``cookies`` entry becomes its own ``Set-Cookie``.  Any other
valid JSON result is the body of a 200 ``application/json`` reply, verbatim:
a string keeps its quotes.
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
)

VERSION = "2.0"
ROUTE_KEY = "$default"
INFERRED_CONTENT_TYPE = ("content-type", "application/json")


def build(request: IncomingRequest) -> bytes:
    """
    The payload 2.0 event for one request.
    """
    headers = grouped_headers(request.headers, lower=True)
    cookies = request_cookies(headers.pop("cookie", []))
    query = grouped(query_pairs(request.raw_query, decode=True))
    body, encoded = event_body(request.body, request.header("content-type"))
    domain = domain_name(request.host)
    event = {
        "version": VERSION,
        "routeKey": ROUTE_KEY,
        "rawPath": request.function_raw_path,
        "rawQueryString": request.raw_query,
        "cookies": cookies,
        "headers": {name: ",".join(values) for name, values in headers.items()},
        "queryStringParameters": ({key: ",".join(values) for key, values in query.items()} or None),
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "authentication": None,
            "authorizer": (
                request.authorizer
                if request.authorizer is not None
                else None
                if request.user is None
                else {"lambda": {"principalId": request.user}}
            ),
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
        },
        "body": body or None,
        "isBase64Encoded": encoded,
    }
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
    return Reply(status, reply_headers(lines), reply_body(document))
