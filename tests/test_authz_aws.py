"""
A Lambda authorizer with C{backend = aws}: the real gateway and AWS invoker, a fake Lambda API.

The authorizer's Invoke is signed as a route's is (SigV4, recomputed here
from what reached the fake API) and names the configured function and
qualifier; when the authorizer refuses, fails or times out, the route's
function is never invoked.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.testing import FakeContext

from .aws_fixtures import signature_checks_out
from .gateway_fixtures import FAKE_ENDPOINT, SECRET_KEY, FakeAWSGateway

ROUTES = """
[authorizer:custom]
type = lambda
function = orders-authz
qualifier = live
backend = aws
timeout = 2s
[route:/lambda/]
auth = custom
format = apigw-v2
"""


def authorize(event: Any, context: FakeContext) -> Any:
    """
    A simple-response authorizer: "good" is let in, "broken" raises, "slow" never answers.
    """
    [token] = event["identitySource"]
    if token == "broken":
        raise RuntimeError("the authorizer broke")
    if token == "slow":
        return Deferred()
    return {"isAuthorized": token == "good", "context": {"tenant": "acme", "seen": event["type"]}}


class AWSLambdaAuthorizerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.invoked: list[Any] = []

        def route_function(event: Any, context: FakeContext) -> Any:
            self.invoked.append(event)
            return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])}

        self.gw = FakeAWSGateway(ROUTES, {"orders-authz": authorize, "fn": route_function})

    def get(self, token: str, advance: float = 0.0) -> tuple[int, Any]:
        d = self.gw.client.get("http://gw/lambda/fn", headers={"Authorization": token})
        self.gw.flush()
        if advance:
            self.gw.clock.advance(advance)
            self.gw.flush()
        response = self.successResultOf(d)
        self.gw.client.flush()
        body = json.loads(self.successResultOf(response.content()))
        return response.code, body

    def authorizer_calls(self) -> list[Any]:
        return [c for c in self.gw.lambda_api.calls if c.function == "orders-authz"]

    def test_allowed(self) -> None:
        """
        The authorizer's signed Invoke names its function and qualifier; the
        route's function then runs with the authorizer's context.
        """
        code, body = self.get("good")
        self.assertEqual(code, 200, body)
        self.assertEqual(body, {"lambda": {"tenant": "acme", "seen": "REQUEST"}})
        [call] = self.authorizer_calls()
        self.assertEqual((call.function, call.qualifier), ("orders-authz", "live"))
        url = f"{FAKE_ENDPOINT}/2015-03-31/functions/orders-authz/invocations?Qualifier=live"
        self.assertTrue(signature_checks_out(call, url, SECRET_KEY))
        self.assertFalse(signature_checks_out(call, url, SECRET_KEY + "x"))
        self.assertIn("/us-west-2/lambda/aws4_request", call.headers["authorization"])
        event = json.loads(call.body)
        self.assertEqual((event["version"], event["identitySource"]), ("2.0", ["good"]))
        self.assertEqual(len(self.invoked), 1)

    def test_denied(self) -> None:
        """
        isAuthorized false: a 403, the route's function never invoked.
        """
        code, body = self.get("bad")
        self.assertEqual((code, body["error"]), (403, "forbidden"))
        self.assertEqual(len(self.authorizer_calls()), 1)
        self.assertEqual(self.invoked, [])

    def test_function_error(self) -> None:
        """
        The authorizer's function raising (X-Amz-Function-Error) is a 500.
        """
        code, body = self.get("broken")
        self.assertEqual((code, body["error"]), (500, "authorizer failed"))
        self.assertEqual(self.invoked, [])

    def test_timeout(self) -> None:
        """
        No answer within the authorizer's timeout is a 500, and the Invoke is given up.
        """
        code, body = self.get("slow", advance=2.0)
        self.assertEqual((code, body["error"]), (500, "authorizer failed"))
        self.assertEqual(len(self.authorizer_calls()), 1)
        self.assertEqual(self.invoked, [])
