"""
CORS through a real browser's eyes: headless Chromium loads a page from one
loopback origin whose script calls the gateway, on another port, with
C{fetch()}; the page writes what the script could read (the status and the
body, or the CORS failure) into its DOM, and the test reads the DOM.

Without Chromium this skips, and fails when C{CI=true} (C{.ci/run} installs
Debian's C{chromium}).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_lambdagw.core.config import Config
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.policies import InFlight, PolicyServices, build_chain
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import InProcessInvoker

from .external import missing
from .gateway_fixtures import config_from
from .process_fixtures import temp_dir

PAGE = """<!doctype html>
<html><body><pre id="out">pending</pre>
<script>
const GATEWAY = new URLSearchParams(location.search).get("gateway");
async function call(init) {
  try {
    const response = await fetch(GATEWAY + "/api/hello", init);
    return response.status + " " + (await response.text());
  } catch (e) {
    return "failed " + e.name;
  }
}
(async () => {
  const results = {
    simple: await call({}),
    preflighted: await call({method: "POST", headers: {"Content-Type": "application/json"},
                             body: "{}"}),
    credentials: await call({credentials: "include"}),
  };
  document.getElementById("out").textContent = JSON.stringify(results);
})();
</script></body></html>
"""


def real_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def hello(event: Any, context: Any) -> Any:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200, "headers": {}}, "body": "hello"}


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        missing("chromium is not installed (apt-get install chromium)")
    return binary


class BrowserCorsTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.binary = chromium()
        self.reactor = real_reactor()
        self.home = temp_dir(self)

    def listen(self, resource: Resource) -> int:
        port = self.reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def gateway(self, allowed_origin: str) -> tuple[int, InProcessInvoker]:
        config: Config = config_from(
            "[route:/api/]\naws_region = us-east-1\n"
            f"cors_allow_origins = {allowed_origin}\n"
            "cors_allow_methods = GET POST\ncors_allow_headers = content-type\n"
            "cors_allow_credentials = no\n"
        )
        services = PolicyServices(self.reactor, in_flight=InFlight(10))
        invoker = InProcessInvoker({"hello": hello})
        bindings = [
            Binding(r, invoker, get_format(r.format), build_chain(r, config, services))
            for r in config.routes
        ]
        resource = GatewayResource(bindings, self.reactor, in_flight=services.in_flight)
        return self.listen(resource), invoker

    def page_site(self) -> str:
        """
        A static site serving the page; its origin.
        """
        root = Resource()
        root.putChild(b"index.html", Data(PAGE.encode(), "text/html; charset=utf-8"))
        root.putChild(b"favicon.ico", Data(b"", "image/x-icon"))
        return f"http://127.0.0.1:{self.listen(root)}"

    async def results(self, url: str) -> dict[str, str]:
        """
        What the page's script wrote, read from the DOM Chromium dumps.
        """
        args = [
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={self.home / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ]
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "")}
        out, err, code = await getProcessOutputAndValue(
            self.binary, args, env=env, reactor=self.reactor
        )
        dom = out.decode()
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        start = dom.index('<pre id="out">') + len('<pre id="out">')
        text = dom[start : dom.index("</pre>", start)]
        self.assertNotEqual(text, "pending", "the script never finished")
        results: dict[str, str] = json.loads(text.replace("&quot;", '"').replace("&amp;", "&"))
        return results

    async def test_allowed_and_disallowed_origins(self) -> None:
        """
        The allowed origin reads the answers (a simple request and one with a
        preflight); with credentials, on a route without
        C{cors_allow_credentials}, the browser refuses to hand over the
        answer; another origin reads nothing.
        """
        allowed, other = self.page_site(), self.page_site()
        gateway_port, invoker = self.gateway(allowed)
        gateway = f"http://127.0.0.1:{gateway_port}"
        seen = await self.results(f"{allowed}/index.html?gateway={gateway}")
        self.assertEqual(
            seen,
            {
                "simple": "200 hello",
                "preflighted": "200 hello",
                "credentials": "failed TypeError",
            },
        )
        calls = len(invoker.calls)
        # The preflight itself was answered by the gateway: not invoked.
        self.assertEqual([c.method for c in invoker.calls], ["GET", "POST", "GET"])
        seen = await self.results(f"{other}/index.html?gateway={gateway}")
        self.assertEqual(
            seen,
            {
                "simple": "failed TypeError",
                "preflighted": "failed TypeError",
                "credentials": "failed TypeError",
            },
        )
        # A simple request is sent (the browser only hides the answer); a
        # preflighted one never is: its preflight was refused.
        self.assertEqual([c.method for c in invoker.calls[calls:]], ["GET", "GET"])
