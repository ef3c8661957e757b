"""
Answers with the event it got, as JSON: see what a function receives.

``curl -X POST --data '{"text": "hi"}' localhost:8080/lambda/echo/anything``
"""

import json


def handler(event, context):
    return {
        "type": "HTTPJSON-REP",
        "meta": {"status": 200, "headers": {"content-type": ["application/json"]}},
        "body": json.dumps(event, indent=2) + "\n",
    }
