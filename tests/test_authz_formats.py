"""
What a function sees of its route's authorizer, in every event format.
"""

from __future__ import annotations

import dataclasses
import json

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.formats import alb, apigw_v1, apigw_v2, httpjson
from twisted_lambdagw.policies.authorizers._common import authorizer_document
from twisted_lambdagw.policies.chain import Principal

from .request_factory import make_request

JWT = Principal("alice", "jwt", claims={"sub": "alice", "iss": "i"}, scopes=("a", "b"))
LAMBDA = Principal("bob", "lambda", context={"tenant": "acme"})


def event(build: object, principal: Principal | None) -> dict[str, object]:
    request = dataclasses.replace(
        make_request(headers=[("x-authenticated-user", principal.user)] if principal else []),
        user=principal.user if principal else None,
        authorizer=authorizer_document(principal),
    )
    built: dict[str, object] = json.loads(build(request))  # type: ignore[operator]
    return built


class AuthorizerShapeTests(SynchronousTestCase):
    def test_apigw_v2(self) -> None:
        context = event(apigw_v2.build, JWT)["requestContext"]
        self.assertEqual(
            context["authorizer"],  # type: ignore[index]
            {"jwt": {"claims": {"sub": "alice", "iss": "i"}, "scopes": ["a", "b"]}},
        )
        context = event(apigw_v2.build, LAMBDA)["requestContext"]
        self.assertEqual(context["authorizer"], {"lambda": {"tenant": "acme"}})  # type: ignore[index]

    def test_apigw_v1(self) -> None:
        context = event(apigw_v1.build, JWT)["requestContext"]
        self.assertEqual(
            context["authorizer"],  # type: ignore[index]
            {"claims": {"sub": "alice", "iss": "i"}, "scopes": ["a", "b"]},
        )
        context = event(apigw_v1.build, LAMBDA)["requestContext"]
        self.assertEqual(
            context["authorizer"],  # type: ignore[index]
            {"principalId": "bob", "tenant": "acme", "integrationLatency": 0},
        )

    def test_httpjson(self) -> None:
        meta = event(httpjson.build, LAMBDA)["meta"]
        self.assertEqual(meta["authorizer"], {"lambda": {"tenant": "acme"}})  # type: ignore[index]
        self.assertNotIn("authorizer", event(httpjson.build, None)["meta"])

    def test_alb_user_header(self) -> None:
        headers = event(alb.build, JWT)["headers"]
        self.assertEqual(headers["x-authenticated-user"], "alice")  # type: ignore[index]

    def test_no_authorizer_is_as_before(self) -> None:
        for build in (apigw_v1.build, apigw_v2.build):
            context = event(build, None)["requestContext"]
            self.assertNotIn("authorizer", context)


class ObservedTests(SynchronousTestCase):
    def test_metrics_and_access_log(self) -> None:
        from twisted_lambdagw.core.exchange import Exchange
        from twisted_lambdagw.observe.accesslog import access_record
        from twisted_lambdagw.observe.metrics import GatewayMetrics

        metrics = GatewayMetrics(["/api/"])
        exchange = Exchange("r", 0.0, "127.0.0.1", "GET", "/api/x", route="/api/")
        exchange.authorizer, exchange.authorizer_cache, exchange.user = "allowed", "hit", "bob"
        metrics(exchange)
        metrics(exchange)
        page = metrics.render().decode()
        self.assertIn(
            'lambdagw_authorizer_decisions_total{outcome="allowed",route="/api/"} 2.0', page
        )
        self.assertIn('lambdagw_authorizer_cache_total{result="hit",route="/api/"} 2.0', page)
        record = access_record(exchange, str)
        self.assertEqual((record["user"], record["authorizer"]), ("bob", "allowed"))
