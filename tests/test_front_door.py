"""
CORS and limits wired into the real gateway: built from the config by
L{Gateway} and L{build_chain}, answered through a real Site (StubTreq),
with a fake Lambda behind the real AWS invoker.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import Config
from twisted_lambdagw.policies import PolicyServices, build_chain
from twisted_lambdagw.policies.cors.step import CorsStep
from twisted_lambdagw.policies.limits.step import MemoryLimitStep, MemoryUserLimitStep
from twisted_lambdagw.server.resource import Binding, GatewayResource

from .auth_fixtures import ALICE_HASH, BOB_HASH, InlineThreads, basic, write
from .gateway_fixtures import FakeAWSGateway
from .scratch import temp_path
from .test_policy_chain import STREAMED, StreamingStub

APP = "https://app.example.com"
CORS = """cors_allow_origins = https://app.example.com https://*.example.org
cors_allow_methods = GET POST
cors_allow_headers = authorization content-type
cors_expose_headers = x-request-id
cors_max_age = 10m
cors_allow_credentials = yes
"""

ROUTES = """
[gateway]
metrics_path = /metrics
health_path = /healthz

[auth]
users_file = {users}

[route:/api/]
auth = basic
{cors}
rate_limit = 1/h
rate_burst = 2
rate_key = user

[route:/pub/]
auth = none
{cors}
rate_limit = 1/h
rate_burst = 2
rate_key = client

[route:/]
auth = none
{cors}
"""

CORS_NAMES = {
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
}


def hello(event: Any, context: Any) -> Any:
    return {
        "type": "HTTPJSON-REP",
        "meta": {
            "status": 200,
            # The function's own CORS headers never reach the client.
            "headers": {"access-control-allow-origin": "*", "access-control-max-age": "999"},
        },
        "body": "hello",
    }


def fails(event: Any, context: Any) -> Any:
    raise ValueError("boom")


class FrontDoorTests(SynchronousTestCase):
    def setUp(self) -> None:
        users = temp_path(self)
        write(users, f"alice:{ALICE_HASH}\nbob:{BOB_HASH}\n")
        self.gw = FakeAWSGateway(
            ROUTES.format(users=users, cors=CORS),
            {"hello": hello, "fails": fails},
            run_in_thread=InlineThreads(),
        )

    def request(self, method: str, path: str, **headers: str) -> Any:
        d: Deferred[Any] = self.gw.client.request(
            method, "http://gw" + path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        self.gw.flush()
        return self.successResultOf(d)

    def cors_headers(self, response: Any) -> dict[str, list[str]]:
        return {
            name.decode().lower(): [v.decode() for v in values]
            for name, values in response.headers.getAllRawHeaders()
            if name.decode().lower() in CORS_NAMES
        }

    def assert_cors(self, response: Any, origin: str = APP) -> None:
        self.assertEqual(
            self.cors_headers(response),
            {
                "access-control-allow-origin": [origin],
                "access-control-allow-credentials": ["true"],
                "access-control-expose-headers": ["x-request-id"],
            },
        )
        self.assertIn("Origin", response.headers.getRawHeaders("vary"))

    def error(self, response: Any) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.successResultOf(response.content()))
        self.assertEqual(body["request_id"], response.headers.getRawHeaders("x-request-id")[0])
        return body

    def test_chains_built_from_the_config(self) -> None:
        api, pub, root = (b.chain for b in self.gw.gateway.bindings)
        assert api is not None and pub is not None and root is not None
        self.assertEqual(
            [type(s) for s in api.steps[:3]],
            [CorsStep, type(api.steps[1]), MemoryUserLimitStep],
        )
        self.assertEqual(
            [line.split(":")[0] for line in api.describe()],
            ["cors", "authorize", "limit-after-auth", "admit", "admit"],
        )
        self.assertIsInstance(pub.steps[1], MemoryLimitStep)
        self.assertEqual(pub.steps[1].stage, "limit-before-auth")
        # CORS and memory limits never wait: the chain runs with no coroutine.
        self.assertFalse(pub.waits)

    def test_preflight_before_auth_nothing_invoked(self) -> None:
        response = self.request(
            "OPTIONS",
            "/api/hello",
            origin=APP,
            access_control_request_method="POST",
            access_control_request_headers="Authorization, Content-Type",
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(
            self.cors_headers(response),
            {
                "access-control-allow-origin": [APP],
                "access-control-allow-methods": ["GET, POST"],
                "access-control-allow-headers": ["authorization, content-type"],
                "access-control-max-age": ["600"],
                "access-control-allow-credentials": ["true"],
            },
        )
        self.assertEqual(self.gw.lambda_api.calls, [])

    def test_preflight_refused(self) -> None:
        for origin, method in [("https://evil.example.net", "GET"), (APP, "DELETE")]:
            response = self.request(
                "OPTIONS", "/api/hello", origin=origin, access_control_request_method=method
            )
            self.assertEqual(response.code, 403)
            self.assertEqual(self.cors_headers(response), {})
            self.assertIn("CORS", self.error(response)["error"])
        self.assertEqual(self.gw.lambda_api.calls, [])

    def test_cors_on_a_reply_replacing_the_functions(self) -> None:
        response = self.request("GET", "/hello", origin="https://a.b.example.org")
        self.assertEqual(response.code, 200)
        self.assert_cors(response, "https://a.b.example.org")
        self.assertEqual(self.successResultOf(response.content()), b"hello")

    def test_function_cors_dropped_for_other_origins(self) -> None:
        response = self.request("GET", "/hello", origin="https://evil.example.net")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.cors_headers(response), {})
        response = self.request("GET", "/hello")
        self.assertEqual(self.cors_headers(response), {})

    def test_cors_on_gateway_errors(self) -> None:
        unauthorized = self.request("GET", "/api/hello", origin=APP)
        self.assertEqual(unauthorized.code, 401)
        self.assert_cors(unauthorized)
        bad_name = self.request("GET", "/pub/no$such", origin=APP)
        self.assertEqual(bad_name.code, 404)
        self.assert_cors(bad_name)
        failed = self.request("GET", "/fails", origin=APP)
        self.assertEqual(failed.code, 502)
        self.assert_cors(failed)
        self.request("GET", "/pub/hello")
        self.request("GET", "/pub/hello")
        limited = self.request("GET", "/pub/hello", origin=APP)
        self.assertEqual(limited.code, 429)
        self.assert_cors(limited)

    def test_limit_refusal(self) -> None:
        for remaining, full_in in [(1, 3600), (0, 7200)]:
            ok = self.request("GET", "/pub/hello")
            self.assertEqual(ok.code, 200)
            self.assertEqual(
                ok.headers.getRawHeaders("ratelimit"), [f'"rate";r={remaining};t={full_in}']
            )
        calls = len(self.gw.lambda_api.calls)
        refused = self.request("GET", "/pub/hello")
        self.assertEqual(refused.code, 429)
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["3600"])
        self.assertEqual(refused.headers.getRawHeaders("ratelimit-policy"), ['"rate";q=2;w=7200'])
        self.assertEqual(refused.headers.getRawHeaders("ratelimit"), ['"rate";r=0;t=3600'])
        self.assertEqual(self.error(refused)["error"], "too many requests")
        self.assertEqual(len(self.gw.lambda_api.calls), calls)
        # An hour later the bucket holds one token again.
        self.gw.clock.advance(3600)
        self.assertEqual(self.request("GET", "/pub/hello").code, 200)

    def test_user_key_after_auth(self) -> None:
        alice = basic("alice", "wonderland")
        # Refused logins use up nobody's limit.
        for _ in range(3):
            self.assertEqual(self.request("GET", "/api/hello").code, 401)
        self.assertEqual(self.request("GET", "/api/hello", authorization=alice).code, 200)
        self.assertEqual(self.request("GET", "/api/hello", authorization=alice).code, 200)
        refused = self.request("GET", "/api/hello", authorization=alice)
        self.assertEqual(refused.code, 429)
        bob = self.request("GET", "/api/hello", authorization=basic("bob", "builder"))
        self.assertEqual(bob.code, 200)

    def test_health_and_metrics_never_limited(self) -> None:
        """
        /healthz and /metrics are answered before any route's chain: a
        route at / limited to one request lets them through every time.
        """
        for _ in range(3):
            self.request("GET", "/pub/hello")
        for _ in range(5):
            self.assertEqual(self.request("GET", "/healthz").code, 200)
            metrics = self.request("GET", "/metrics")
            self.assertEqual(metrics.code, 200)
            self.assertIsNone(metrics.headers.getRawHeaders("ratelimit"))
        page = self.successResultOf(metrics.content()).decode()
        self.assertIn(
            'lambdagw_rate_limited_total{key="client",limit="rate",route="/pub/"} 1.0', page
        )

    def test_store_errors_counted(self) -> None:
        shared = self.gw.gateway.limits_store
        assert shared is not None
        shared.health.failed("connection refused", "allow")
        shared.health.failed("connection refused", "allow")
        page = self.successResultOf(self.request("GET", "/metrics").content()).decode()
        self.assertIn("lambdagw_limits_store_errors_total 2.0", page)


class StreamedCorsTests(SynchronousTestCase):
    def test_cors_on_the_streamed_head(self) -> None:
        from treq.testing import StubTreq
        from twisted.internet.task import Clock

        from twisted_lambdagw.core.formats import get_format
        from twisted_lambdagw.policies import InFlight

        from .gateway_fixtures import config_from

        config: Config = config_from(STREAMED + CORS)
        services = PolicyServices(Clock(), in_flight=InFlight(5))
        invoker = StreamingStub()
        bindings = [
            Binding(r, invoker, get_format(r.format), build_chain(r, config, services))
            for r in config.routes
        ]
        client: Any = StubTreq(GatewayResource(bindings, Clock(), in_flight=services.in_flight))
        d = client.get("http://gw/lambda/fn", headers={"Origin": APP})
        client.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), [APP])
        self.assertEqual(response.headers.getRawHeaders("vary"), ["Origin"])
        self.assertEqual(self.successResultOf(response.content()), b"streamed")
