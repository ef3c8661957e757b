"""
Assembling a gateway from its configuration.

This is the one place that knows which invoker serves which route.  It is
also the public way to embed the gateway in an existing Twisted Site: build
a L{Gateway}, mount its C{resource}, and start and stop its C{service} with
your application so the connection pool and workers are cleaned up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.credentials import Credentials
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from .aws import AWSInvoker, CredentialSource, RunInThread, resolve_endpoint
from .config import Config, RouteConfig, load_config
from .formats import get_format
from .invoker import Invoker
from .local.invoker import LocalInvoker
from .resource import Binding, GatewayResource


def _thread_runner(reactor: Any) -> RunInThread[Any]:
    from twisted.internet.threads import deferToThreadPool

    def run(f: Callable[[], Any]) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f)

    return run


def _default_chain(profile: str | None) -> Callable[[], Credentials | None]:
    def resolve() -> Credentials | None:
        import botocore.session

        credentials: Credentials | None = botocore.session.Session(
            profile=profile
        ).get_credentials()
        return credentials

    return resolve


class LocalBackendService(Service):
    """
    Stops the local backend's worker processes when the gateway stops.
    """

    def __init__(self, local: LocalInvoker) -> None:
        self.local = local

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self.local.stop())


class PoolService(Service):
    """
    Owns the outgoing connection pool; closes it when the gateway stops.
    """

    def __init__(self, pool: HTTPConnectionPool) -> None:
        self.pool = pool

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closing: Deferred[None] = self.pool.closeCachedConnections()
        return closing


def default_pool(reactor: Any) -> HTTPConnectionPool:
    """
    The persistent pool for AWS calls: Lambda is one host, so keep many
    connections to it, and drop idle ones before Lambda's side does.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1000
    pool.cachedConnectionTimeout = 60
    return pool


class Gateway:
    """
    A configured gateway: its resource, and the service owning its resources.

    :param client: the treq HTTPClient for AWS calls; by default one over
        C{pool}.
    :param pool: the connection pool the default client uses; by default a
        new L{default_pool} on ``reactor``.  C{service} closes it on stop,
        whether it was given or made here.
    :param worker_id: which of the gateway's processes this is, with
        ``workers = N``: 0 for the parent, 1 to N-1 for the workers.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        client: Any = None,
        pool: HTTPConnectionPool | None = None,
        run_in_thread: RunInThread[Any] | None = None,
        endpoint_for: Callable[[str, str | None], str] = resolve_endpoint,
        worker_id: int = 0,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self._reactor = reactor
        self.pool = pool
        if client is None:
            from treq.client import HTTPClient

            if self.pool is None:
                self.pool = default_pool(reactor)
            client = HTTPClient(Agent(reactor, pool=self.pool, connectTimeout=10))
        self._client = client
        self._run_in_thread = run_in_thread or _thread_runner(reactor)
        self._endpoint_for = endpoint_for
        self._endpoints: dict[tuple[str, str | None], str] = {}
        self._chain: CredentialSource | None = None
        self.local: LocalInvoker | None = None
        if config.local is not None and any(r.backend == "local" for r in config.routes):
            self.local = LocalInvoker(reactor, config.local)
        self.bindings = [self._bind(route) for route in config.routes]
        clock: IReactorTime = reactor
        self.resource = GatewayResource(
            self.bindings,
            clock,
            health_path=config.gateway.health_path,
            max_in_flight=config.gateway.max_in_flight,
        )
        self.service = MultiService()
        if self.pool is not None:
            PoolService(self.pool).setServiceParent(self.service)
        if self.local is not None:
            LocalBackendService(self.local).setServiceParent(self.service)

    @classmethod
    def from_file(cls, path: str, reactor: Any, **kwargs: Any) -> Gateway:
        """
        A gateway built from a config file; raises ConfigError if it is bad.
        """
        return cls(load_config(path), reactor, **kwargs)

    def _bind(self, route: RouteConfig) -> Binding:
        invoker: Invoker
        if route.backend == "aws":
            invoker = self._aws_invoker(route)
        else:
            assert self.local is not None, "config checks local routes have [local]"
            invoker = self.local
        return Binding(route=route, invoker=invoker, format=get_format(route.format))

    def _aws_invoker(self, route: RouteConfig) -> AWSInvoker:
        aws = self.config.aws
        assert route.region is not None
        if route.aws_access is not None and route.aws_secret is not None:
            credentials = CredentialSource.from_keys(route.aws_access, route.aws_secret)
        elif aws.access_key_id is not None and aws.secret_access_key is not None:
            credentials = CredentialSource.from_keys(
                aws.access_key_id, aws.secret_access_key, aws.session_token
            )
        else:
            if self._chain is None:
                self._chain = CredentialSource(
                    self._run_in_thread, resolve=_default_chain(aws.profile)
                )
            credentials = self._chain
        key = (route.region, aws.endpoint_url)
        if key not in self._endpoints:
            # Resolving loads botocore's endpoint rules: once per region.
            self._endpoints[key] = self._endpoint_for(*key)
        endpoint = self._endpoints[key]
        now = self._reactor.seconds
        return AWSInvoker(self._client, credentials, route.region, endpoint, now=now)
