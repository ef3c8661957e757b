"""
Assembling a gateway from its configuration.

This is the one place that knows which invoker serves which route.  It is
also the public way to embed the gateway in an existing Twisted Site: build
a L{Gateway}, mount its C{resource}, and start and stop its C{service} with
your application.  Starting the service opens the access log; stopping it
drains the requests under way, then stops credential refreshes and the
local workers, closes the connection pool and the access log, in that order.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from treq.client import HTTPClient as TreqClient
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent

from twisted_lambdagw._types import HTTPClient, IGatewayReactor, RunInThread
from twisted_lambdagw.core.config import (
    FUNCTION_ARN,
    Config,
    ConfigError,
    RouteConfig,
    authorizer_route,
    authorizer_routes,
)
from twisted_lambdagw.core.config_reader import load_config
from twisted_lambdagw.core.describe import one_line
from twisted_lambdagw.core.exchange import ExchangeObserver
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.daemon.lifecycle import DrainService, SequentialService
from twisted_lambdagw.invokers.aws.admission import ConnectionLimit
from twisted_lambdagw.invokers.aws.agent import KeepAliveAgent
from twisted_lambdagw.invokers.aws.credentials import (
    BotocoreCredentials,
    CredentialProvider,
    CredentialSource,
    CredentialSpec,
    CredentialsService,
    NoCredentials,
    Resolved,
    credential_spec,
    route_names,
    specs_by_route,
)
from twisted_lambdagw.invokers.aws.endpoints import (
    EndpointError,
    EndpointSpec,
    partition_of,
    resolve_endpoint,
)
from twisted_lambdagw.invokers.aws.invoker import AWSInvoker
from twisted_lambdagw.invokers.aws.upstream import invoke_client, persistent_pool
from twisted_lambdagw.invokers.base import Invoker
from twisted_lambdagw.invokers.local.invoker import LocalInvoker
from twisted_lambdagw.observe.accesslog import AccessLog
from twisted_lambdagw.observe.metrics import GatewayMetrics
from twisted_lambdagw.policies.auth import BasicAuthenticator, basic_authenticator
from twisted_lambdagw.policies.authorizers.jwks import issuer_tls
from twisted_lambdagw.policies.authorizers.service import Authorizers
from twisted_lambdagw.policies.build import PolicyServices, build_chain
from twisted_lambdagw.policies.inflight import InFlight
from twisted_lambdagw.policies.limits.config import StoreConfig
from twisted_lambdagw.policies.limits.service import LimitsStoreService, SharedStore, open_store
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.server.site import GatewaySite
from twisted_lambdagw.server.state import RoutingState, retire

T = TypeVar("T")


def _thread_runner(reactor: IGatewayReactor) -> RunInThread:
    from twisted.internet.threads import deferToThreadPool

    def run(f: Callable[[], T], /) -> Deferred[T]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f)

    return run


class LocalBackendService(Service):
    """
    Stops the local backend's worker processes when the gateway stops.

    C{local} is the backend serving now: a reload may replace it, or set it
    to None when no route uses it any more.
    """

    def __init__(self, local: LocalInvoker | None) -> None:
        self.local = local

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.local is None:
            return succeed(None)
        return Deferred.fromCoroutine(self.local.stop())


class PoolService(Service):
    """
    Owns the outgoing connection pool; closes it when the gateway stops.
    """

    def __init__(self, pool: KeepAliveAgent) -> None:
        self.pool = pool
        """The pool serving now: a reload may replace it."""

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closing: Deferred[None] = self.pool.closeCachedConnections()
        return closing


def default_pool(
    reactor: IGatewayReactor, max_per_host: int = 1000, connect_timeout: float = 30
) -> KeepAliveAgent:
    """
    The persistent pool for AWS calls: Lambda is one host per region, so keep
    many connections to it, and drop idle ones before Lambda's side does.
    """
    return persistent_pool(reactor, max_per_host, idle_timeout=60, connect_timeout=connect_timeout)


def endpoint_spec(config: Config, route: RouteConfig) -> EndpointSpec:
    """
    What decides an AWS route's endpoint.
    """
    assert route.region is not None
    return EndpointSpec(
        region=route.region,
        url=config.aws.endpoint_url,
        fips=route.use_fips_endpoint,
        dualstack=route.use_dualstack_endpoint,
    )


def check_aws_routes(
    config: Config, endpoint_for: Callable[[EndpointSpec], str] = resolve_endpoint
) -> dict[EndpointSpec, str]:
    """
    Every AWS route's endpoint, raising ConfigError for one that cannot exist.

    An ARN in C{single} must name a region of its own partition (an
    C{arn:aws-cn:} function lives in a C{cn-} region); a FIPS or
    dual-stack endpoint must be one botocore's data lists for the region.
    """
    endpoints: dict[EndpointSpec, str] = {}
    for route in (*config.routes, *authorizer_routes(config)):
        if route.backend != "aws":
            continue
        section = f"{config.path}: [route:{route.prefix}]"
        arn = FUNCTION_ARN.fullmatch(route.single) if route.single else None
        if arn is not None:
            partition = partition_of(arn["region"])
            if partition is not None and partition != arn["partition"]:
                raise ConfigError(
                    f"{section} single: region {arn['region']} is in partition"
                    f" {partition}, not {arn['partition']}"
                )
        spec = endpoint_spec(config, route)
        if spec not in endpoints:
            # Resolving loads botocore's endpoint rules: once per region.
            try:
                endpoints[spec] = endpoint_for(spec)
            except EndpointError as e:
                key = "use_fips_endpoint" if spec.fips else "use_dualstack_endpoint"
                raise ConfigError(f"{section} {key}: {e}") from None
    return endpoints


def _nothing() -> None:
    """
    Count nothing: limits store errors when there is no metrics page.
    """


class Gateway:
    """
    A configured gateway: its resource, and the service owning its resources.

    @param client: what sends AWS calls, with treq's C{post} (a treq
        HTTPClient); by default L{twisted_lambdagw.invokers.aws.upstream.lambda_client}'s
        over C{pool}.
    @param pool: the kept-alive connections the default client uses
        (a L{KeepAliveAgent}); by default a new L{default_pool} on
        C{reactor}, sized by C{[aws] max_connections}.
        C{service} closes it on stop, whether it was given or made here.
    @param credentials: turns credential specs into botocore credentials
        (blocking; run in threads); by default botocore's chain and STS.
    @param resolved: credentials already resolved for some specs, e.g. by
        L{twisted_lambdagw.invokers.aws.credentials.resolve_at_startup} before the
        reactor ran; the others are resolved when C{service} starts.
    @param jitter: uniform in [0, 1), spreading retries out.
    @param worker_id: which of the gateway's processes this is, with
        C{workers = N}: 0 for the parent, 1 to N-1 for the workers.

    Raises ConfigError for an AWS route whose endpoint cannot exist.

    @ivar resource: the twisted.web resource serving every route; it
        matches route prefixes, C{health_path} and C{metrics_path} against
        the request's full path, wherever it is mounted.
    @ivar service: start and stop it with the application.
    @ivar metrics: the L{GatewayMetrics} (with its own Prometheus registry),
        or None when C{metrics_path} is off.
    @ivar access_log: the L{AccessLog}, or None when C{access_log} is unset.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: IGatewayReactor,
        *,
        client: HTTPClient | None = None,
        pool: KeepAliveAgent | None = None,
        run_in_thread: RunInThread | None = None,
        endpoint_for: Callable[[EndpointSpec], str] = resolve_endpoint,
        credentials: CredentialProvider | None = None,
        resolved: Mapping[CredentialSpec, Resolved] | None = None,
        jitter: Callable[[], float] = random.random,
        worker_id: int = 0,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self._reactor = reactor
        self.pool = pool
        self._owns_pool = client is None
        if client is None:
            if self.pool is None:
                self.pool = default_pool(
                    reactor, config.aws.max_connections, config.aws.connect_timeout
                )
            client = invoke_client(self.pool)
        self._client = client
        self._run_in_thread = run_in_thread or _thread_runner(reactor)
        self._endpoint_for = endpoint_for
        self._endpoints = check_aws_routes(config, endpoint_for)
        self._provider = credentials if credentials is not None else BotocoreCredentials()
        self._jitter = jitter
        self.connection_limits: dict[str, ConnectionLimit] = {}
        """One per Lambda endpoint, shared by its routes: C{[aws] max_connections}."""
        self.credential_sources = self._credential_sources(config, resolved or {}, {})
        """One per distinct way of finding credentials, shared by its routes."""
        self.local: LocalInvoker | None = self._local(config, None)
        self.authenticator: BasicAuthenticator | None = self._authenticator(config)
        """The login check for C{auth = basic} routes, when there are any."""
        clock: IReactorTime = reactor
        settings = config.gateway
        observers: list[ExchangeObserver] = []
        # One process: no worker label, the records and series as ever.
        labelled_worker = worker_id if settings.workers > 1 else None
        self.access_log: AccessLog | None = None
        if settings.access_log is not None:
            self.access_log = AccessLog(
                settings.access_log,
                source=f"{config.path}: [gateway] access_log",
                worker=labelled_worker,
            )
            observers.append(self.access_log)
        self.metrics: GatewayMetrics | None = None
        if settings.metrics_path is not None:
            self.metrics = GatewayMetrics(
                [route.prefix for route in config.routes],
                in_flight=lambda: self.resource.in_flight,
                worker=labelled_worker,
            )
            observers.append(self.metrics)
        self.limits_store: SharedStore | None = self._limits_store(config, None)
        """Where the routes' limits count; None when no route has limits."""
        self.policies = PolicyServices(
            clock=clock,
            run_in_thread=self._run_in_thread,
            metrics=self.metrics,
            in_flight=InFlight(settings.max_in_flight),
            authenticator=self.authenticator,
            limits_store=self.limits_store,
            authorizers=self._authorizers(config),
        )
        """What the routes' policy chains share."""
        self.bindings = [self._bind(route) for route in config.routes]
        self.resource = GatewayResource(
            self.bindings,
            clock,
            health_path=settings.health_path,
            metrics_path=settings.metrics_path,
            metrics=self.metrics,
            in_flight=self.policies.in_flight,
            observers=observers,
            trusted_proxies=settings.trusted_proxies,
        )
        # Started in this order, stopped in the reverse one, each stop
        # waiting for the one before: the drain first, the access log last.
        self.service = SequentialService()
        if self.access_log is not None:
            self.access_log.setServiceParent(self.service)
        self._pool_service: PoolService | None = None
        if self.pool is not None:
            self._pool_service = PoolService(self.pool)
            self._pool_service.setServiceParent(self.service)
        self._local_service = LocalBackendService(self.local)
        self._local_service.setServiceParent(self.service)
        self._credentials_service = CredentialsService(self.credential_sources.values())
        self._credentials_service.setServiceParent(self.service)
        self._limits_service = LimitsStoreService(self.limits_store)
        self._limits_service.setServiceParent(self.service)
        self.authorizers.setServiceParent(self.service)
        self.drain = DrainService(self.resource, clock, settings.drain_timeout)
        self.drain.setServiceParent(self.service)

    def site(self) -> GatewaySite:
        """
        A Site serving the gateway alone, with the configured limits and timeouts.
        """
        gateway = self.config.gateway
        return GatewaySite(
            self.resource,
            reactor=self._reactor,
            max_body_size=gateway.max_body_size,
            header_timeout=gateway.header_timeout,
            idle_timeout=gateway.idle_timeout,
        )

    @classmethod
    def from_file(cls, path: str, reactor: IGatewayReactor, **kwargs: Any) -> Gateway:
        """
        A gateway built from a config file; raises ConfigError if it is bad.
        """
        return cls(load_config(path), reactor, **kwargs)

    def _local(self, config: Config, running: LocalInvoker | None) -> LocalInvoker | None:
        """
        The local backend for C{config}: C{running} (warm) if its settings
        did not change, a new one if some route needs one, else None.
        """
        routes = (*config.routes, *authorizer_routes(config))
        if config.local is None or not any(r.backend == "local" for r in routes):
            return None
        if running is not None and self.config.local == config.local:
            return running
        return LocalInvoker(self._reactor, config.local)

    def _limits_store(self, config: Config, running: SharedStore | None) -> SharedStore | None:
        """
        The limits store for C{config}: C{running} if it names the same one
        (its C{limits_store_down} updated), a new one if some route has
        limits, else None.
        """
        if not any(route.limits is not None for route in config.routes):
            return None
        wanted = config.gateway.limits_store or StoreConfig()
        if running is not None and running.serves(wanted):
            running.config = wanted
            return running
        metrics = self.metrics
        return open_store(
            wanted, self._reactor, metrics.limits_store_error if metrics is not None else _nothing
        )

    def _authenticator(self, config: Config) -> BasicAuthenticator | None:
        if config.auth is None or not any(r.auth == "basic" for r in config.routes):
            return None
        return basic_authenticator(
            config.auth.users_file, config.auth.realm, self._run_in_thread, self._reactor.seconds
        )

    async def reload(self, config: Config) -> None:
        """
        Serve C{config} from the next request on, without a restart.

        The whole serving state (credentials, local backend, login check,
        invokers, routes) is built beside the one serving now, then swapped
        in at once: requests in flight finish with the state they started
        with, and what only the old state used (a replaced local backend or
        connection pool, credential sources no route needs) is closed once
        its last request is over.  Credentials a new route needs are
        resolved before anything is swapped.

        The listeners, the access log and the metrics page are not this
        object's to change (the daemon says which keys need a restart);
        C{config.gateway}'s other settings apply to new requests.

        Raises L{ConfigError}, with one line, when C{config} cannot be
        served; the running state is then left as it was.
        """
        old_config = self.config
        endpoints = check_aws_routes(config, self._endpoint_for)
        authenticator = self._authenticator(config)
        pool, client, limits = self.pool, self._client, self.connection_limits
        new_pool = self._owns_pool and (
            (config.aws.max_connections, config.aws.connect_timeout)
            != (old_config.aws.max_connections, old_config.aws.connect_timeout)
        )
        if new_pool:
            pool = default_pool(
                self._reactor, config.aws.max_connections, config.aws.connect_timeout
            )
            client, limits = invoke_client(pool), {}
        sources = self._credential_sources(config, {}, self.credential_sources)
        fresh = [source for spec, source in sources.items() if spec not in self.credential_sources]
        try:
            for source in fresh:
                await source.start()
        except Exception as e:
            for source in fresh:
                source.stop()
            if new_pool and pool is not None:
                pool.closeCachedConnections()
            reason = "none found" if isinstance(e, NoCredentials) else one_line(e)
            raise ConfigError(
                f"{config.path}: {source.name}: no AWS credentials ({source.description}): {reason}"
            ) from None
        local = self._local(config, self.local)
        old_store = self.limits_store
        limits_store = self._limits_store(config, old_store)
        # Nothing can fail from here on: the new state becomes the gateway's.
        old_local, old_pool, old_sources = self.local, self.pool, self.credential_sources
        self.config, self._endpoints, self.authenticator = config, endpoints, authenticator
        self.pool, self._client, self.connection_limits = pool, client, limits
        self.credential_sources, self.local = sources, local
        self.limits_store = limits_store
        old_authorizers = self.authorizers
        self.policies = replace(
            self.policies,
            authenticator=authenticator,
            limits_store=limits_store,
            authorizers=self._authorizers(config),
        )
        old_authorizers.disownServiceParent()
        self.authorizers.setServiceParent(self.service)
        self.bindings = [self._bind(route) for route in config.routes]
        settings = config.gateway
        self.resource.configure(
            health_path=settings.health_path,
            max_in_flight=settings.max_in_flight,
            trusted_proxies=settings.trusted_proxies,
        )
        self.drain.timeout = settings.drain_timeout
        old_state = self.resource.state
        self.resource.state = RoutingState.of(self.bindings)
        if self._pool_service is not None:
            self._pool_service.pool = pool  # type: ignore[assignment]
        self._local_service.local = local
        self._credentials_service.sources = list(sources.values())
        self._limits_service.shared = limits_store
        closers: list[Callable[[], object]] = []
        if old_store is not None and old_store is not limits_store:
            closers.append(old_store.close)
        if old_local is not None and old_local is not local:
            closers.append(lambda: Deferred.fromCoroutine(old_local.stop()))
        if old_pool is not None and old_pool is not pool:
            closers.append(old_pool.closeCachedConnections)
        for spec, source in old_sources.items():
            if sources.get(spec) is not source:
                closers.append(source.stop)
        retire(old_state, closers)
        self.log.info(
            "reloaded {path}: {routes} route(s)",
            path=config.path,
            routes=len(config.routes),
        )

    @property
    def authorizers(self) -> Authorizers:
        """Every C{[authorizer:NAME]} a route names, and the issuers' keys they trust."""
        assert self.policies.authorizers is not None
        return self.policies.authorizers

    def _authorizers(self, config: Config) -> Authorizers:
        reactor = self._reactor
        return Authorizers(
            config,
            reactor,
            lambda ca_file: TreqClient(Agent(reactor, contextFactory=issuer_tls(ca_file))),
            lambda authorizer: self._invoker(authorizer_route(config.aws, authorizer)),
        )

    def _invoker(self, route: RouteConfig) -> Invoker:
        if route.backend == "aws":
            return self._aws_invoker(route)
        assert self.local is not None, "config checks local routes have [local]"
        return self.local

    def _bind(self, route: RouteConfig) -> Binding:
        return Binding(
            route=route,
            invoker=self._invoker(route),
            format=get_format(route.format),
            chain=build_chain(route, self.config, self.policies),
        )

    def _credential_sources(
        self,
        config: Config,
        resolved: Mapping[CredentialSpec, Resolved],
        running: Mapping[CredentialSpec, CredentialSource],
    ) -> dict[CredentialSpec, CredentialSource]:
        """
        One credential source per distinct spec, shared by the routes using
        it; those in C{running} (the state serving now) are kept as they are.
        """
        sources: dict[CredentialSpec, CredentialSource] = {}
        for spec, routes in specs_by_route(config).items():
            if spec in running:
                sources[spec] = running[spec]
                continue
            name = route_names(routes)
            if spec.static:
                assert spec.access_key is not None and spec.secret_key is not None
                sources[spec] = CredentialSource.from_keys(
                    spec.access_key,
                    spec.secret_key,
                    spec.session_token,
                    name=name,
                    description=spec.describe(),
                )
                continue
            source = CredentialSource(
                self._run_in_thread,
                resolve=functools.partial(self._provider.resolve, spec),
                clock=self._reactor,
                name=name,
                description=spec.describe(),
            )
            if spec in resolved:
                source.adopt(resolved[spec])
            sources[spec] = source
        return sources

    def _aws_invoker(self, route: RouteConfig) -> AWSInvoker:
        assert route.region is not None
        credentials = self.credential_sources[credential_spec(self.config.aws, route)]
        endpoint = self._endpoints[endpoint_spec(self.config, route)]
        limit = self.connection_limits.get(endpoint)
        if limit is None:
            limit = ConnectionLimit(self.config.aws.max_connections, self._reactor)
            self.connection_limits[endpoint] = limit
        return AWSInvoker(
            self._client,
            credentials,
            route.region,
            endpoint,
            clock=self._reactor,
            log_type=route.log_type,
            retry_idempotent=route.retry_idempotent,
            jitter=self._jitter,
            limit=limit,
        )
