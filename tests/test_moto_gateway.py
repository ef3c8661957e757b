"""
The gateway against a real, independently written Lambda API: moto in server
mode, which checks every SigV4 signature (body hash included).  Real sockets
on loopback both ways.
"""

from __future__ import annotations

import json
from typing import Any, cast

from treq.client import HTTPClient
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent
from twisted.web.server import Site

from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.server.request import request_factory

from .gateway_fixtures import config_from
from .loopback import real_reactor
from .moto_lambda import DOCKERLESS_BODY_PREFIX, MotoLambda, shared_moto_lambda


class MotoGatewayTests(TestCase):
    """
    Real signed Invoke calls to moto, through a real gateway Site.
    """

    def start_gateway(self, moto: MotoLambda, secret: str | None = None) -> None:
        self.reactor = real_reactor()
        config = config_from(
            f"""
[aws]
region = {moto.region}
access_key_id = {moto.access_key_id}
secret_access_key = {secret or moto.secret_access_key}
endpoint_url = {moto.endpoint_url}

[route:/lambda/]
timeout = 20s
"""
        )
        gateway = Gateway(config, self.reactor)
        assert gateway.pool is not None
        self.addCleanup(gateway.pool.closeCachedConnections)
        site = Site(gateway.resource)
        site.requestFactory = request_factory(config.gateway.max_body_size)
        port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.client = HTTPClient(Agent(self.reactor))
        self.logged: list[LogEvent] = []
        observer = cast(ILogObserver, self.logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    async def get(self, path: str) -> tuple[int, Any]:
        response = await self.client.get(self.base + path)
        body = await response.content()
        return response.code, json.loads(body)

    async def test_signed_invoke_round_trip(self) -> None:
        """
        A correctly signed invoke is a 200 from moto and the function's reply to the client.
        """
        server = shared_moto_lambda(simple=True)
        self.start_gateway(server.info)
        reply = {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": '{"via": "moto"}'}
        server.queue_results([json.dumps(reply)])
        status, body = await self.get(f"/lambda/{server.info.function_name}/x?y=1")
        self.assertEqual((status, body), (200, {"via": "moto"}))

    async def test_dockerless_invoke_is_function_error(self) -> None:
        """
        moto without Docker reports a function error with a plain-text payload: a 502,
        with the payload in the log, not in the response.
        """
        moto = shared_moto_lambda().info
        self.start_gateway(moto)
        status, body = await self.get(f"/lambda/{moto.function_name}")
        self.assertEqual(status, 502)
        self.assertEqual(body["error"], "function error")
        [event] = [e for e in self.logged if e.get("kind") == "Handled"]
        self.assertTrue(event["error_message"].startswith(DOCKERLESS_BODY_PREFIX.decode()))
        self.assertEqual(event["request_id"], body["request_id"])

    async def test_wrong_secret_is_502(self) -> None:
        """
        moto's 403 SignatureDoesNotMatch is a 502 to the client and logged with its status.
        """
        moto = shared_moto_lambda().info
        self.start_gateway(moto, secret="not-the-right-secret")
        status, body = await self.get(f"/lambda/{moto.function_name}")
        self.assertEqual(status, 502)
        self.assertEqual(body["error"], "function invocation failed")
        [event] = [e for e in self.logged if e.get("status") == 403]
        self.assertEqual(event["function"], moto.function_name)

    async def test_missing_function_is_502(self) -> None:
        """
        moto's 404 ResourceNotFoundException is a 502 (a gateway misconfiguration).
        """
        moto = shared_moto_lambda().info
        self.start_gateway(moto)
        status, body = await self.get("/lambda/no-such-function")
        self.assertEqual((status, body["error"]), (502, "function invocation failed"))
        [event] = [e for e in self.logged if e.get("code") == "ResourceNotFoundException"]
        self.assertEqual(event["status"], 404)
