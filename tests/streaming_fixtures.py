"""
Gateways with streamed routes in front of L{FakeStreamingLambda}.

L{StubStreamingGateway} runs everything in memory on a L{Clock}: the real
Gateway and AWSInvoker, the fake behind C{StubTreq}.  L{LoopbackStreaming}
puts the fake and the gateway on real loopback ports, for the tests that
need real sockets (backpressure, incremental reads by a real client).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Request, Site

from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.invokers.aws.endpoints import EndpointSpec
from twisted_lambdagw.invokers.aws.upstream import persistent_pool

from .fake_streaming_lambda import FakeStreamingLambda, Scenario
from .gateway_fixtures import ACCESS_KEY, SECRET_KEY, config_from

STREAM_ROUTES = """
[route:/s/]
stream = yes
timeout = 10s
stream_idle_timeout = 5s

[route:/raw/]
stream = yes
stream_prelude = never

[route:/always/]
stream = yes
stream_prelude = always
"""


def aws_section(endpoint: str) -> str:
    return f"""
[aws]
region = us-west-2
access_key_id = {ACCESS_KEY}
secret_access_key = {SECRET_KEY}
endpoint_url = {endpoint}
"""


def _endpoint(spec: EndpointSpec) -> str:
    assert spec.url is not None
    return spec.url


class StubStreamingGateway:
    """
    The real gateway with streamed routes, the fake streaming Lambda behind it.

    ``clock`` drives both the gateway's timeouts and the fake's delays;
    ``exchanges`` collects every finished exchange.
    """

    def __init__(
        self,
        routes: str = STREAM_ROUTES,
        *,
        delay: float = 2.0,
        scenarios: Mapping[str, Scenario] | None = None,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.lambda_api = FakeStreamingLambda(self.clock, delay=delay, scenarios=scenarios)
        self.lambda_client: Any = StubTreq(self.lambda_api)
        self.config = config_from(aws_section("http://lambda.fake") + routes)
        self.gateway = Gateway(
            self.config, self.clock, client=self.lambda_client, endpoint_for=_endpoint
        )
        self.exchanges: list[Exchange] = []
        self.gateway.resource.observers.append(self.exchanges.append)
        self.client: Any = StubTreq(self.gateway.resource)

    def flush(self) -> None:
        """
        Deliver everything pending between client, gateway and fake Lambda.
        """
        for _ in range(5):
            self.lambda_client.flush()
            self.client.flush()


class LoopbackStreaming:
    """
    The fake streaming Lambda and the gateway, each on a 127.0.0.1 port.

    Call L{start} in setUp and L{stop} in cleanup.  ``site`` is the
    gateway's Site; ``transports`` holds the client connection of every
    request it served, so tests can see what the gateway buffers for each.
    """

    def __init__(self, reactor: Any, routes: str = STREAM_ROUTES, *, delay: float = 0.05) -> None:
        self.reactor = reactor
        self.routes = routes
        self.lambda_api = FakeStreamingLambda(reactor, delay=delay)
        self.pool = persistent_pool(reactor, max_per_host=10)
        self.client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = HTTPClient(Agent(reactor, pool=self.client_pool))
        self.exchanges: list[Exchange] = []
        self.transports: list[Any] = []
        self._ports: list[IListeningPort] = []

    def start(self) -> None:
        lambda_port = self.reactor.listenTCP(0, Site(self.lambda_api), interface="127.0.0.1")
        self._ports.append(lambda_port)
        endpoint = f"http://127.0.0.1:{lambda_port.getHost().port}"
        config = config_from(aws_section(endpoint) + self.routes)
        self.gateway = Gateway(config, self.reactor, pool=self.pool, endpoint_for=_endpoint)
        self.gateway.resource.observers.append(self.exchanges.append)
        # The production Site: body cap, header deadline, idle timeout.
        self.site = self.gateway.site()
        transports = self.transports
        factory = self.site.requestFactory

        def recording(*args: Any, **kwargs: Any) -> Request:
            request = factory(*args, **kwargs)
            transports.append(request.transport)
            return request

        self.site.requestFactory = recording  # type: ignore[assignment]
        port = self.reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self._ports.append(port)
        self.lambda_url = endpoint
        self.url = f"http://127.0.0.1:{port.getHost().port}"

    async def stop(self) -> None:
        for port in self._ports:
            stopping = port.stopListening()
            if stopping is not None:
                await stopping
        await self.pool.closeCachedConnections()
        await self.client_pool.closeCachedConnections()
        # Let aborted connections finish closing before trial checks the reactor.
        pause: Deferred[None] = Deferred()
        self.reactor.callLater(0.05, pause.callback, None)
        await pause
