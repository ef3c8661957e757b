"""
The production AWS path against moto in server mode: credentials from a
botocore chain and from a role assumed through moto's STS, asynchronous
invocations, ARNs, log tails; moto checks every signature, session tokens
included.
"""

from __future__ import annotations

import json
from typing import Any, cast

from botocore.credentials import CredentialResolver, EnvProvider
from treq.client import HTTPClient
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent
from twisted.web.server import Site

from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.invokers.aws.credentials import BotocoreCredentials
from twisted_lambdagw.server.request import request_factory

from .aws_fixtures import isolated_session
from .gateway_fixtures import config_from
from .loopback import real_reactor
from .moto_lambda import MotoLambda, shared_moto_lambda

REPLY = {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": '{"via": "moto"}'}


class MotoAWSTests(TestCase):
    """
    Real signed calls to moto through a real gateway Site and the real service.
    """

    def start_gateway(self, moto: MotoLambda, text: str, **kwargs: Any) -> Gateway:
        self.reactor = real_reactor()
        config = config_from(text)
        gateway = Gateway(config, self.reactor, **kwargs)
        gateway.service.startService()
        self.addCleanup(gateway.service.stopService)
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
        return gateway

    def keys(self, moto: MotoLambda) -> str:
        return (
            f"[aws]\nregion = {moto.region}\nendpoint_url = {moto.endpoint_url}\n"
            f"access_key_id = {moto.access_key_id}\n"
            f"secret_access_key = {moto.secret_access_key}\n"
        )

    async def call(self, path: str, method: str = "GET") -> tuple[int, Any]:
        response = await self.client.request(method, self.base + path, data=b"{}")
        return response.code, json.loads(await response.content())

    async def test_default_chain(self) -> None:
        """
        Keys found by botocore's chain (the environment provider) sign calls moto accepts.
        """
        server = shared_moto_lambda(simple=True)
        moto = server.info
        env = {
            "AWS_ACCESS_KEY_ID": moto.access_key_id,
            "AWS_SECRET_ACCESS_KEY": moto.secret_access_key,
        }
        provider = BotocoreCredentials(isolated_session(CredentialResolver([EnvProvider(env)])))
        text = f"[aws]\nregion = {moto.region}\nendpoint_url = {moto.endpoint_url}\n"
        gateway = self.start_gateway(moto, text + "[route:/lambda/]\n", credentials=provider)
        server.queue_results([json.dumps(REPLY)])
        status, body = await self.call(f"/lambda/{moto.function_name}")
        self.assertEqual((status, body), (200, {"via": "moto"}))
        [source] = gateway.credential_sources.values()
        self.assertEqual(source.method, "env")

    async def test_assumed_role(self) -> None:
        """
        role_arn: moto's STS issues temporary keys, and moto accepts calls signed with them.
        """
        server = shared_moto_lambda(simple=True)
        moto = server.info
        provider = BotocoreCredentials(isolated_session(), sts_endpoint_url=moto.endpoint_url)
        text = self.keys(moto) + f"role_arn = {moto.role_arn}\nexternal_id = gw-ext-1\n"
        gateway = self.start_gateway(moto, text + "[route:/lambda/]\n", credentials=provider)
        server.queue_results([json.dumps(REPLY)])
        status, body = await self.call(f"/lambda/{moto.function_name}")
        self.assertEqual((status, body), (200, {"via": "moto"}))
        [source] = gateway.credential_sources.values()
        self.assertEqual(source.method, "assume-role over config-keys")
        keys = await source.frozen()
        self.assertTrue(keys.access_key.startswith("ASIA"))
        self.assertIsNotNone(keys.token)

    async def test_function_arn_in_single(self) -> None:
        """
        A full ARN in single is invoked (signed with the ARN's region) and answers.
        """
        server = shared_moto_lambda(simple=True)
        moto = server.info
        route = f"[route:/fixed/]\nsingle = {moto.function_arn}\n"
        self.start_gateway(moto, self.keys(moto) + route)
        server.queue_results([json.dumps(REPLY)])
        status, body = await self.call("/fixed/anything")
        self.assertEqual((status, body), (200, {"via": "moto"}))

    async def test_event_invocation(self) -> None:
        """
        invocation_type = Event: moto's 202 becomes the client's 202 with moto's request id.
        """
        moto = shared_moto_lambda().info
        route = "[route:/jobs/]\ninvocation_type = Event\n"
        self.start_gateway(moto, self.keys(moto) + route)
        status, body = await self.call(f"/jobs/{moto.function_name}", "POST")
        self.assertEqual(status, 202)
        self.assertEqual(len(body["aws_request_id"]), 52)

    async def test_event_to_missing_function(self) -> None:
        """
        An Event call for a function moto does not have is a 502, logged with its error.
        """
        moto = shared_moto_lambda().info
        self.start_gateway(moto, self.keys(moto) + "[route:/jobs/]\ninvocation_type = Event\n")
        status, body = await self.call("/jobs/no-such-function", "POST")
        self.assertEqual((status, body["error"]), (502, "function invocation failed"))
        [event] = [e for e in self.logged if e.get("code") == "ResourceNotFoundException"]
        self.assertIn("Function not found", event["error_message"])
        self.assertIsNotNone(event["aws_request_id"])

    async def test_log_tail_is_signed(self) -> None:
        """
        log_type = Tail adds a signed X-Amz-Log-Type that moto accepts.
        """
        moto = shared_moto_lambda().info
        self.start_gateway(moto, self.keys(moto) + "[route:/lambda/]\nlog_type = Tail\n")
        status, body = await self.call(f"/lambda/{moto.function_name}")
        # moto without Docker: a function error, so the signature was accepted.
        self.assertEqual((status, body["error"]), (502, "function error"))
