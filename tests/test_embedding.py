"""
Embedding: the gateway's resource mounted beside a static page in one Site
of an existing application, built from a config file or from config objects
in code, with its service started and stopped by the application's.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

import twisted_lambdagw
from twisted_lambdagw import (
    AWSConfig,
    Config,
    Gateway,
    GatewayConfig,
    GatewayResource,
    RouteConfig,
)
from twisted_lambdagw.testing import FakeContext, FakeLambda

from .gateway_fixtures import ACCESS_KEY, FAKE_ENDPOINT, SECRET_KEY
from .process_fixtures import python_probe, temp_dir, write_config
from .test_tap import ObservedPool


def hello(event: Any, context: FakeContext) -> Any:
    return {
        "type": "HTTPJSON-REP",
        "meta": {"status": 200, "headers": {"content-type": "text/plain"}},
        "body": f"hello from {context.function_name} at {event['meta']['path']}",
    }


def app_site(gateway: Gateway) -> Resource:
    """
    An application's resource tree: a page at /, the gateway under /lambda/.
    """
    root = Resource()
    root.putChild(b"", Data(b"the home page", "text/plain"))
    root.putChild(b"lambda", gateway.resource)
    return root


class EmbeddingTests(SynchronousTestCase):
    """
    One Site serves the application's own page and the gateway.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.lambda_client = StubTreq(FakeLambda({"hello": hello}))
        self.pool = ObservedPool(MemoryReactorClock())

    def build(self, gateway: Gateway) -> Any:
        self.assertIsInstance(gateway.resource, GatewayResource)
        return StubTreq(app_site(gateway))

    def text(self, client: Any, url: str) -> tuple[int, str]:
        d = client.get(url)
        for _ in range(3):
            self.lambda_client.flush()
            client.flush()
        response = self.successResultOf(d)
        return response.code, self.successResultOf(response.text())

    def check_serving(self, client: Any) -> None:
        self.assertEqual(self.text(client, "http://app/"), (200, "the home page"))
        self.assertEqual(
            self.text(client, "http://app/lambda/hello/x"),
            (200, "hello from hello at /lambda/hello/x"),
        )
        code, body = self.text(client, "http://app/lambda/no.such")
        self.assertEqual((code, json.loads(body)["error"]), (404, "no such function"))
        self.assertEqual(self.text(client, "http://app/lambda/healthz")[0], 200)

    def test_from_config_objects(self) -> None:
        """
        A gateway built from config objects in code serves under /lambda/ beside the page.
        """
        config = Config(
            path="<app>",
            gateway=GatewayConfig(health_path="/lambda/healthz", metrics_path=None),
            aws=AWSConfig(
                region="us-west-2",
                access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY,
                endpoint_url=FAKE_ENDPOINT,
            ),
            routes=(RouteConfig(prefix="/lambda/", region="us-west-2"),),
        )
        gateway = Gateway(
            config,
            self.clock,
            client=self.lambda_client,
            pool=self.pool,
            endpoint_for=lambda spec: spec.url or "",
        )
        self.check_serving(self.build(gateway))

    def test_from_file_with_the_app_service(self) -> None:
        """
        From a config file; the app's MultiService starts it, and stopping closes its pool.
        """
        path = write_config(
            temp_dir(self),
            "[gateway]\nhealth_path = /lambda/healthz\n\n"
            f"[aws]\nregion = us-west-2\naccess_key_id = {ACCESS_KEY}\n"
            f"secret_access_key = {SECRET_KEY}\nendpoint_url = {FAKE_ENDPOINT}\n\n"
            "[route:/lambda/]\n",
        )
        gateway = Gateway.from_file(
            str(path),
            self.clock,
            client=self.lambda_client,
            pool=self.pool,
            endpoint_for=lambda spec: spec.url or "",
        )
        app = MultiService()
        gateway.service.setServiceParent(app)
        app.startService()
        self.check_serving(self.build(gateway))
        stopping = app.stopService()
        [closing] = self.pool.closing
        self.assertNoResult(stopping)
        closing.callback(None)
        self.successResultOf(stopping)


class PublicNamesTests(SynchronousTestCase):
    """
    The package exports the embedding API, and importing it stays light.
    """

    def test_names(self) -> None:
        """
        Every name in __all__ resolves; anything else is an AttributeError.
        """
        for name in twisted_lambdagw.__all__:
            self.assertIsNotNone(getattr(twisted_lambdagw, name))
        self.assertTrue(set(twisted_lambdagw.__all__) <= set(dir(twisted_lambdagw)))
        self.assertRaises(AttributeError, getattr, twisted_lambdagw, "resolve_endpoint")

    def test_import_is_light(self) -> None:
        """
        Importing the package and the lambdagw command loads neither botocore nor treq.
        """
        probe = (
            "import json, sys\n"
            "import twisted_lambdagw, twisted_lambdagw.daemon.cli\n"
            "print(json.dumps(sorted(m for m in sys.modules\n"
            "    if m.split('.')[0] in ('botocore', 'treq', 'prometheus_client'))))\n"
        )
        self.assertEqual(python_probe(self, probe), [])
