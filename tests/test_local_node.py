"""
Node.js functions (``NAME.mjs``, ``NAME.js``) on the local backend, run by
AWS's own runtime interface client, ``aws-lambda-ric`` from npm.

They need C{node} on PATH and C{runtimes/node} installed (C{npm ci}, as
C{.ci/run} does); without them these tests skip, and fail when C{CI=true}.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, cast

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.server import Site

from twisted_lambdagw.core.config import ConfigError, LocalConfig, RouteConfig
from twisted_lambdagw.core.config_reader import load_config
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.core.node_runtime import BUNDLED, find_client, find_node
from twisted_lambdagw.invokers.local import LocalInvoker, LocalReactor
from twisted_lambdagw.server.resource import Binding, GatewayResource

from .external import missing
from .process_fixtures import REPO_ROOT, temp_dir, write_config
from .test_streaming_wire import Reader

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_FUNCTIONS = os.path.join(HERE, "node_functions")
NODE_EXAMPLES = str(REPO_ROOT / "examples" / "node")


def installed() -> LocalConfig:
    """
    The config's defaults for node and the client; skip (or fail, under CI)
    without them.
    """
    config = LocalConfig(functions_dir=NODE_FUNCTIONS)
    if config.node is None or config.node_client is None:
        missing(
            f"node ({config.node}) and aws-lambda-ric ({config.node_client}) are needed:"
            f" install nodejs and npm, then npm ci in {BUNDLED}"
        )
    return config


class NodeFunctionTests(TestCase):
    """
    Real requests through the gateway resource to Node.js workers.
    """

    async def serve(self, directory: str, stream: bool = False) -> tuple[HTTPClient, str]:
        from twisted.internet import reactor as global_reactor

        reactor = cast(Any, global_reactor)
        config = LocalConfig(functions_dir=directory, concurrency=1)
        installed()
        invoker = LocalInvoker(cast(LocalReactor, reactor), config)
        self.addCleanup(lambda: Deferred.fromCoroutine(invoker.stop()))
        route = RouteConfig(prefix="/node/", backend="local", timeout=30.0, stream=stream)
        site = Site(
            GatewayResource([Binding(route, invoker, get_format("httpjson"))], reactor),
            reactor=reactor,
        )
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool)), f"http://127.0.0.1:{port.getHost().port}"

    async def test_documented_example(self) -> None:
        """
        The Node.js handler the docs show (event formats) is
        examples/node/bytes.mjs, and it runs.
        """
        with open(os.path.join(NODE_EXAMPLES, "bytes.mjs"), encoding="utf-8") as f:
            source = f.read()
        page = (REPO_ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
        self.assertIn(f"(`examples/node/bytes.mjs`):\n\n```js\n{source}```", page)
        client, base = await self.serve(NODE_EXAMPLES)
        response = await client.post(f"{base}/node/bytes/some/where", data=b"\xff\x00abc")
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.json(), {"path": "/node/bytes/some/where", "bytes": 5})

    async def test_documented_streaming_example(self) -> None:
        """
        The server-sent events function the docs show (response streaming)
        is examples/node/sse.mjs, and its events reach the client one by
        one, before it ends.
        """
        with open(os.path.join(NODE_EXAMPLES, "sse.mjs"), encoding="utf-8") as f:
            source = f.read()
        page = (REPO_ROOT / "docs" / "streaming.md").read_text(encoding="utf-8")
        self.assertIn(f"(`examples/node/sse.mjs`):\n\n```js\n{source}```", page)
        client, base = await self.serve(NODE_EXAMPLES, stream=True)
        response = await client.get(f"{base}/node/sse", unbuffered=True)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        from twisted.internet import reactor

        reader = Reader(reactor)
        response.deliverBody(reader)
        self.assertEqual(await reader.first, b"data: one\n\n")
        self.assertFalse(reader.ended.called)
        self.assertIsInstance(await reader.ended, ResponseDone)
        self.assertEqual(reader.body, b"data: one\n\ndata: two\n\ndata: three\n\n")

    async def test_context_and_environment(self) -> None:
        """
        The handler gets Lambda's context from aws-lambda-ric, in the functions directory.
        """
        client, base = await self.serve(NODE_FUNCTIONS)
        response = await client.get(f"{base}/node/context")
        body = await response.json()
        self.assertEqual(response.code, 200, body)
        self.assertEqual(body["functionName"], "context")
        self.assertRegex(body["awsRequestId"], r"^[0-9a-f-]{36}$")
        self.assertTrue(body["invokedFunctionArn"].endswith(":function:context"))
        self.assertEqual(body["handler"], "context.handler")
        self.assertEqual(body["taskRoot"], NODE_FUNCTIONS)
        self.assertEqual(os.path.realpath(body["cwd"]), os.path.realpath(NODE_FUNCTIONS))
        self.assertIs(body["remainingPositive"], True)
        self.assertIs(body["hasAwsSecret"], False)
        self.assertEqual(body["method"], "GET")

    async def test_commonjs(self) -> None:
        """
        NAME.js with ``exports.handler`` is a function too.
        """
        client, base = await self.serve(NODE_FUNCTIONS)
        response = await client.get(f"{base}/node/common/x")
        self.assertEqual(response.code, 201)
        self.assertEqual(await response.json(), {"module": "commonjs", "path": "/node/common/x"})

    async def test_error(self) -> None:
        """
        A handler that throws is a 502 whose body says nothing of the error.
        """
        client, base = await self.serve(NODE_FUNCTIONS)
        response = await client.get(f"{base}/node/fails")
        body = await response.json()
        self.assertEqual(response.code, 502)
        self.assertNotIn("on purpose", json.dumps(body))


class NodeConfigTests(SynchronousTestCase):
    """
    A functions directory with Node.js functions needs node and the client.
    """

    def setUp(self) -> None:
        self.home = temp_dir(self)
        (self.home / "fns").mkdir()
        (self.home / "fns" / "hi.mjs").write_text("export const handler = async () => 1;\n")

    def load(self, local: str) -> LocalConfig:
        text = f"[local]\nfunctions_dir = fns\n{local}[route:/l/]\nbackend = local\n"
        config = load_config(str(write_config(self.home, text)))
        assert config.local is not None
        return config.local

    def test_found(self) -> None:
        """
        By default node is PATH's and the client the checkout's runtimes/node.
        """
        local = self.load("")
        self.assertEqual(local.node, find_node())
        self.assertEqual(local.node_client, find_client(str(BUNDLED)))
        self.assertEqual(local.node_client, installed().node_client)

    def test_no_node(self) -> None:
        """
        No node: one line naming [local] functions_dir and the file.
        """
        error = self.assertRaises(ConfigError, self.load, "node = no-such-node-here\n")
        self.assertEqual(
            str(error), f"{self.home}/gw.ini: [local] node: no such executable: 'no-such-node-here'"
        )
        empty = self.home / "empty-bin"
        empty.mkdir()
        text = "[local]\nfunctions_dir = fns\n[route:/l/]\nbackend = local\n"
        path = str(write_config(self.home, text))
        error = self.assertRaises(ConfigError, load_config, path, {"PATH": str(empty)})
        self.assertEqual(
            str(error),
            f"{path}: [local] functions_dir: hi.mjs is a Node.js function, but there is no"
            " 'node' on PATH (install Node.js, or set [local] node)",
        )

    def test_no_client(self) -> None:
        """
        A node_runtime folder without a built aws-lambda-ric is refused, naming it.
        """
        (self.home / "npm").mkdir()
        error = self.assertRaises(ConfigError, self.load, "node_runtime = npm\n")
        self.assertTrue(
            re.fullmatch(
                rf"{re.escape(str(self.home))}/gw.ini: \[local\] node_runtime: no built"
                rf" aws-lambda-ric in '{re.escape(str(self.home))}/npm' \(run npm ci there\)",
                str(error),
            ),
            str(error),
        )

    def test_explicit_runtime(self) -> None:
        """
        node_runtime may name the npm folder (relative to the config) or the package itself.
        """
        installed()
        runtime = os.path.relpath(BUNDLED, self.home)
        self.assertEqual(
            self.load(f"node_runtime = {runtime}\n").node_client, installed().node_client
        )
        package = BUNDLED / "node_modules" / "aws-lambda-ric"
        self.assertEqual(
            self.load(f"node_runtime = {package}\n").node_client, installed().node_client
        )
