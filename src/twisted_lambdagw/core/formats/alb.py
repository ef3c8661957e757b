"""
Application Load Balancer target events (``format = alb``).

What a Lambda target group sends with multi-value headers off, the default:
``headers`` and ``queryStringParameters`` keep the last value of a repeated
header or key.  L{twisted_lambdagw.core.formats.alb_multi} is the same event with
the attribute ``lambda.multi_value_headers.enabled`` on.  Either way:

 - header names are lower-case;
 - query keys and values are left exactly as sent, still URL-encoded, as ALB
   does ("you must decode them in your Lambda function");
 - ``path`` is the path the function sees, still percent-encoded;
 - ``body`` is ``""`` when empty, and base64 unless the content type is one
   ALB documents as text (``text/*``, ``application/json``,
   ``application/javascript``, ``application/xml``) and the body is valid
   UTF-8: a form body is base64, as from ALB;
 - ``requestContext.elb.targetGroupArn`` is L{TARGET_GROUP_ARN}.

Replies need an integer ``statusCode``; ``statusDescription`` (``"200 OK"``)
gives the reason phrase, validated.  A reply naming no Content-Type is
``application/octet-stream``, as from ALB.  ALB reads only the header field
of its mode; the gateway accepts either and merges them as API Gateway does,
the multi-value list winning for a name in both, so a function that fills
both (Rust ``lambda_http``) works in either mode.
"""

from __future__ import annotations

from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply

from ._common import (
    ACCOUNT_ID,
    dump_json,
    event_body,
    grouped,
    grouped_headers,
    last_values,
    parse_proxy_reply,
    query_pairs,
)

TARGET_GROUP_ARN = (
    f"arn:aws:elasticloadbalancing:local:{ACCOUNT_ID}:targetgroup/lambdagw/0000000000000000"
)
"""The target group every event claims: region ``local``, account all zeros."""

DEFAULT_CONTENT_TYPE = "application/octet-stream"
"""What ALB answers with when the function names no Content-Type."""


def build_event(request: IncomingRequest, *, multi: bool) -> bytes:
    """
    The ALB event for one request, in single-value or multi-value mode.
    """
    headers = grouped_headers(request.headers, lower=True)
    query = grouped(query_pairs(request.raw_query, decode=False))
    body, encoded = event_body(request.body, request.header("content-type"), alb=True)
    event: dict[str, object] = {
        "requestContext": {"elb": {"targetGroupArn": TARGET_GROUP_ARN}},
        "httpMethod": request.method,
        "path": request.function_raw_path,
    }
    if multi:
        event["multiValueQueryStringParameters"] = query
        event["multiValueHeaders"] = headers
    else:
        event["queryStringParameters"] = last_values(query)
        event["headers"] = last_values(headers)
    event["body"] = body
    event["isBase64Encoded"] = encoded
    return dump_json(event)


def build(request: IncomingRequest) -> bytes:
    """
    The single-value ALB event for one request.
    """
    return build_event(request, multi=False)


def parse(payload: bytes, document: object = NOT_PARSED) -> Reply:
    """
    The reply an ALB target's result means; L{MalformedReply} when it means none.
    """
    return parse_proxy_reply(payload, document, default_type=DEFAULT_CONTENT_TYPE, description=True)
