"""
Says hello: ``GET /lambda/hello?name=you``.

A function for the HTTPJSON envelope: the event is the request
(``type: HTTPJSON-REQ``) and the result an ``HTTPJSON-REP`` reply.
"""

import json
from urllib.parse import parse_qs


def handler(event, context):
    query = parse_qs(event.get("meta", {}).get("query", ""))
    name = query.get("name", ["world"])[0]
    body = {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "aws_request_id": context.aws_request_id,
    }
    return {
        "type": "HTTPJSON-REP",
        "meta": {"status": 200, "headers": {"content-type": ["application/json"]}},
        "body": json.dumps(body),
    }
