"""
The bundled example functions, served by the real gateway resource over loopback.

This is the path ``twistd lambdagw --config etc/gw.ini`` takes for a local
route: HTTP request → GatewayResource → httpjson event → LocalInvoker →
awslambdaric worker → HTTPJSON-REP reply → HTTP response.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, cast

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from twisted_lambdagw.core.config import LocalConfig, RouteConfig
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.local import LocalInvoker, LocalReactor
from twisted_lambdagw.server.resource import Binding, GatewayResource

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples", "functions")
TEST_FUNCTIONS = os.path.join(HERE, "functions")


class ExampleFunctionTests(TestCase):
    async def serve(self, fmt: str = "httpjson") -> tuple[HTTPClient, str]:
        """
        A gateway on a loopback port with /lambda/ on the examples and /test/
        on the test functions, both in format C{fmt}; a client for it and
        its base URL.
        """
        from twisted.internet import reactor as global_reactor

        reactor = cast(Any, global_reactor)
        database = tempfile.mkdtemp(prefix="lambdagw-notes-")
        self.addCleanup(shutil.rmtree, database, True)
        env = (("NOTES_DB", os.path.join(database, "notes.sqlite3")),)
        bindings = []
        for prefix, directory in (("/lambda/", EXAMPLES), ("/test/", TEST_FUNCTIONS)):
            config = LocalConfig(functions_dir=directory, env=env, concurrency=2)
            invoker = LocalInvoker(cast(LocalReactor, reactor), config)
            self.addCleanup(self.stop_invoker, invoker)
            route = RouteConfig(prefix=prefix, backend="local", timeout=30.0)
            bindings.append(Binding(route, invoker, get_format(fmt)))
        site = Site(GatewayResource(bindings, reactor), reactor=reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool)), f"http://127.0.0.1:{port.getHost().port}"

    def stop_invoker(self, invoker: LocalInvoker) -> Deferred[None]:
        return Deferred.fromCoroutine(invoker.stop())

    async def fetch(
        self,
        client: HTTPClient,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[bytes | str, list[bytes | str]] | None = None,
    ) -> tuple[int, Any]:
        response = await client.request(method, url, data=body, headers=headers)
        content = await response.content()
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        return response.code, json.loads(content) if content else None

    async def test_hello(self) -> None:
        """hello greets the name from the query string."""
        client, base = await self.serve()
        code, body = await self.fetch(client, "GET", base + "/lambda/hello/world?name=you")
        self.assertEqual(code, 200)
        self.assertEqual(body["message"], "Hello, you!")
        self.assertEqual(body["function"], "hello")

    async def test_echo(self) -> None:
        """echo answers with the HTTPJSON event it received."""
        client, base = await self.serve()
        code, event = await self.fetch(
            client, "POST", base + "/lambda/echo/anything?x=1", b'{"text": "hi"}'
        )
        self.assertEqual(code, 200)
        self.assertEqual(event["type"], "HTTPJSON-REQ")
        self.assertEqual(event["meta"]["method"], "POST")
        self.assertEqual(event["meta"]["query"], "x=1")
        self.assertEqual(event["body"], '{"text": "hi"}')

    async def echo_in(self, fmt: str) -> dict[str, Any]:
        """
        The event echo answers with on a route in format C{fmt}, after
        checking the reply is a 200 JSON one.
        """
        client, base = await self.serve(fmt)
        code, event = await self.fetch(
            client,
            "POST",
            base + "/lambda/echo/any?x=1&x=2",
            b'{"text": "hi"}',
            {"Content-Type": ["application/json"], "Cookie": ["a=1; b=2"]},
        )
        self.assertEqual(code, 200)
        self.assertEqual(event["body"], '{"text": "hi"}')
        self.assertIs(event["isBase64Encoded"], False)
        return cast(dict[str, Any], event)

    async def test_echo_apigw_v1(self) -> None:
        """echo answers an API Gateway REST event in the REST reply shape."""
        event = await self.echo_in("apigw-v1")
        self.assertEqual((event["resource"], event["httpMethod"]), ("/{proxy+}", "POST"))
        self.assertEqual(event["multiValueQueryStringParameters"], {"x": ["1", "2"]})

    async def test_echo_apigw_v2(self) -> None:
        """echo answers a payload 2.0 event in the 2.0 reply shape."""
        event = await self.echo_in("apigw-v2")
        self.assertEqual((event["version"], event["rawQueryString"]), ("2.0", "x=1&x=2"))
        self.assertEqual(event["cookies"], ["a=1", "b=2"])

    async def test_echo_alb(self) -> None:
        """echo answers an ALB event with single-value headers."""
        event = await self.echo_in("alb")
        self.assertIn("elb", event["requestContext"])
        self.assertEqual(event["queryStringParameters"], {"x": "2"})

    async def test_echo_alb_multi(self) -> None:
        """echo answers an ALB event with multi-value headers in multiValueHeaders."""
        event = await self.echo_in("alb-multi")
        self.assertIn("elb", event["requestContext"])
        self.assertEqual(event["multiValueQueryStringParameters"], {"x": ["1", "2"]})

    async def test_notes(self) -> None:
        """notes stores, lists, shows and deletes notes, with JSON errors."""
        client, base = await self.serve()
        notes = base + "/lambda/notes"
        code, created = await self.fetch(client, "POST", notes, b'{"text": "buy milk"}')
        self.assertEqual((code, created["text"]), (201, "buy milk"))
        code, listing = await self.fetch(client, "GET", notes)
        self.assertEqual((code, [n["text"] for n in listing["notes"]]), (200, ["buy milk"]))
        one = f"{notes}/{created['id']}"
        self.assertEqual((await self.fetch(client, "GET", one))[1], created)
        self.assertEqual(await self.fetch(client, "DELETE", one), (204, None))
        self.assertEqual((await self.fetch(client, "GET", one))[0], 404)
        self.assertEqual((await self.fetch(client, "POST", notes, b"not json"))[0], 400)
        self.assertEqual((await self.fetch(client, "PUT", notes))[0], 405)

    async def test_function_error_is_a_bare_502(self) -> None:
        """A function that raises is a 502 whose body says nothing of the error."""
        client, base = await self.serve()
        response = await client.get(base + "/test/fails")
        content = await response.content()
        self.assertEqual(response.code, 502)
        body = json.loads(content)
        self.assertEqual(set(body), {"error", "request_id"})
        self.assertNotIn(b"password", content)
        self.assertNotIn(b"NoteStoreUnavailable", content)

    async def test_missing_function_is_a_404(self) -> None:
        """A name with no NAME.py or NAME/bootstrap is a JSON 404."""
        client, base = await self.serve()
        response = await client.get(base + "/lambda/nosuch")
        self.assertEqual(response.code, 404)
        self.assertEqual(set(json.loads(await response.content())), {"error", "request_id"})
