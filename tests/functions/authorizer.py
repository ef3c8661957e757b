"""
A Lambda authorizer for tests: "good" is let in, "slow" sleeps, "broken" raises, "odd" is odd.

Payload 2.0 events get a simple response; 1.0 events an IAM policy for the route ARN.
"""

import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    token = event["identitySource"][0] if event["version"] == "2.0" else event["identitySource"]
    if token == "slow":
        time.sleep(5)
    if token == "broken":
        raise RuntimeError("the authorizer broke")
    if token == "odd":
        return {"isAuthorized": "yes"}
    allowed = token == "good"
    ctx: dict[str, object] = {"tenant": "acme", "principalId": "bob", "type": event["type"]}
    if event["version"] == "2.0":
        return {"isAuthorized": allowed, "context": ctx}
    return {
        "principalId": "bob",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allowed else "Deny",
                    "Resource": event["methodArn"],
                }
            ],
        },
        "context": ctx,
    }
