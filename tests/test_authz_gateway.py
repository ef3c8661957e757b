"""
Authorizers end to end: a Gateway from a config file, on loopback, with real functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.gateway import Gateway

from .idp_fixtures import listen_gateway, serve_idp
from .loopback import real_reactor

FUNCTIONS = os.path.join(os.path.dirname(__file__), "functions")


class GatewayAuthorizerTests(TestCase):
    timeout = 60

    async def serve(self, text: str) -> tuple[HTTPClient, str, Gateway]:
        reactor = real_reactor()
        directory = tempfile.mkdtemp(prefix="lambdagw-access-")
        self.addCleanup(shutil.rmtree, directory, True)
        log = os.path.join(directory, "access.log")
        config = parse_config(
            f"[gateway]\naccess_log = {log}\n[local]\nfunctions_dir = {FUNCTIONS}\n" + text,
            "gw.ini",
            environ={},
        )
        gateway, base = listen_gateway(self, config)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.log = log
        return (
            HTTPClient(Agent(reactor, pool=pool)),
            base,
            gateway,
        )

    async def get(self, client: HTTPClient, url: str, **headers: str) -> tuple[int, Any, Any]:
        response = await client.get(url, headers=Headers({k: [v] for k, v in headers.items()}))
        body = json.loads(await response.content())
        if response.code == 200:
            body = body["event"]
        return response.code, body, response.headers

    async def test_jwt_route(self) -> None:
        idp = serve_idp(self)
        client, base, gateway = await self.serve(
            f"[authorizer:users]\ntype = jwt\nissuer = {idp.issuer}\naudience = web-app\n"
            "algorithms = RS256 ES256\n"
            "[route:/api/]\nbackend = local\nformat = apigw-v2\nauth = users\nscopes = read\n"
            "[route:/open/]\nbackend = local\nformat = apigw-v2\n"
        )
        await Deferred.fromCoroutine(_until_keys(gateway))
        code, event, _ = await self.get(
            client, base + "/api/probe", Authorization=f"Bearer {idp.token({'scope': 'read'})}"
        )
        self.assertEqual(code, 200)
        jwt = event["requestContext"]["authorizer"]["jwt"]
        self.assertEqual((jwt["claims"]["sub"], jwt["scopes"]), ("alice", ["read"]))
        self.assertEqual(event["headers"]["x-authenticated-user"], "alice")
        code, body, headers = await self.get(client, base + "/api/probe")
        self.assertEqual((code, body["error"]), (401, "authentication required"))
        self.assertEqual(headers.getRawHeaders("www-authenticate"), ["Bearer"])
        self.assertEqual(body["request_id"], headers.getRawHeaders("x-request-id")[0])
        code, body, headers = await self.get(client, base + "/api/probe", Authorization="Bearer x")
        self.assertEqual((code, body["error"]), (401, "invalid token"))
        code, body, headers = await self.get(
            client, base + "/api/probe", Authorization=f"Bearer {idp.token(algorithm='ES256')}"
        )
        self.assertEqual((code, body["error"]), (403, "insufficient scope"))
        # A client's own x-authenticated-user never reaches a function.
        code, event, _ = await self.get(
            client, base + "/open/probe", **{"X-Authenticated-User": "eve"}
        )
        self.assertEqual(code, 200)
        self.assertNotIn("x-authenticated-user", event["headers"])
        assert gateway.metrics is not None
        page = gateway.metrics.render().decode()
        self.assertIn(
            'lambdagw_authorizer_decisions_total{outcome="allowed",route="/api/"} 1.0', page
        )
        self.assertIn(
            'lambdagw_authorizer_decisions_total{outcome="invalid",route="/api/"} 1.0', page
        )

    async def test_lambda_route(self) -> None:
        client, base, gateway = await self.serve(
            "[authorizer:custom]\ntype = lambda\nfunction = authorizer\nbackend = local\n"
            "result_ttl = 1m\n"
            "[route:/api/]\nbackend = local\nformat = apigw-v2\nauth = custom\n"
        )
        code, event, _ = await self.get(client, base + "/api/probe", Authorization="good")
        self.assertEqual(code, 200)
        self.assertEqual(
            event["requestContext"]["authorizer"],
            {"lambda": {"principalId": "bob", "tenant": "acme", "type": "REQUEST"}},
        )
        self.assertEqual(event["headers"]["x-authenticated-user"], "bob")
        code, body, _ = await self.get(client, base + "/api/probe", Authorization="bad")
        self.assertEqual((code, body["error"]), (403, "forbidden"))
        code, body, _ = await self.get(client, base + "/api/probe", Authorization="broken")
        self.assertEqual((code, body["error"]), (500, "authorizer failed"))
        code, body, _ = await self.get(client, base + "/api/probe")
        self.assertEqual(code, 401)
        await self.get(client, base + "/api/probe", Authorization="good")
        assert gateway.metrics is not None
        page = gateway.metrics.render().decode()
        self.assertIn('lambdagw_authorizer_cache_total{result="hit",route="/api/"} 1.0', page)


async def _until_keys(gateway: Gateway) -> None:
    from twisted.internet.task import deferLater

    for _ in range(100):
        if all(source.keys is not None for source in gateway.authorizers.keys.values()):
            return
        await deferLater(real_reactor(), 0.05)
    raise AssertionError("the keys never came")
