"""
Answers with the event it got, as JSON: see what a function receives.

``curl -X POST --data '{"text": "hi"}' localhost:8080/lambda/echo/anything``

It answers in the shape of whichever format the route sends, so it works
behind every ``format``: the caddy-awslambda envelope (httpjson), API
Gateway REST (apigw-v1), HTTP API / Function URL (apigw-v2) and ALB with
multi-value headers off or on (alb, alb-multi).
"""

import json


def event_format(event):
    """
    Which format an event is in, told by the keys only that format sends.
    """
    if event.get("type") == "HTTPJSON-REQ":
        return "httpjson"
    if event.get("version") == "2.0":
        return "apigw-v2"
    if "elb" in (event.get("requestContext") or {}):
        return "alb-multi" if "multiValueHeaders" in event else "alb"
    if "resource" in event and "httpMethod" in event:
        return "apigw-v1"
    raise ValueError("not an HTTP event")


def reply(fmt, status, content_type, body):
    """
    A text reply in the shape format C{fmt} expects back.
    """
    if fmt == "httpjson":
        return {
            "type": "HTTPJSON-REP",
            "meta": {"status": status, "headers": {"content-type": [content_type]}},
            "body": body,
        }
    result = {"statusCode": status, "body": body, "isBase64Encoded": False}
    if fmt == "alb-multi":
        result["multiValueHeaders"] = {"content-type": [content_type]}
    else:
        result["headers"] = {"content-type": content_type}
    if fmt in ("alb", "alb-multi"):
        result["statusDescription"] = f"{status} OK"
    return result


def handler(event, context):
    fmt = event_format(event)
    return reply(fmt, 200, "application/json", json.dumps(event, indent=2) + "\n")
