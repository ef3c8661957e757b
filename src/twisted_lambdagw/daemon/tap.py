"""
C{twistd lambdagw} / C{twist lambdagw}: command-line options and the service.

The config file is read and checked while the options are parsed, so every
config or endpoint error ends startup with one line, before anything listens.
AWS credentials are resolved then too (in threads, with a bounded wait), so
a gateway with none fails the same way instead of starting to answer 502s;
see L{twisted_lambdagw.invokers.aws.credentials} for why this happens before the reactor.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import TextIO, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python import usage

from twisted_lambdagw._compat import raise_synchronously
from twisted_lambdagw._types import IGatewayReactor
from twisted_lambdagw.core.config import Config, ConfigError
from twisted_lambdagw.core.config_reader import load_config
from twisted_lambdagw.gateway import Gateway, check_aws_routes
from twisted_lambdagw.invokers.aws.agent import KeepAliveAgent
from twisted_lambdagw.invokers.aws.credentials import (
    STARTUP_TIMEOUT,
    BotocoreCredentials,
    CredentialProvider,
    CredentialSpec,
    Resolved,
    resolve_at_startup,
)
from twisted_lambdagw.observe.accesslog import STDOUT
from twisted_lambdagw.policies.auth import load_users

from .gctune import GCTuning
from .lifecycle import DaemonService, SignalInstaller
from .listen import ReloadableTLS, http2_available, server_endpoint
from .reload import Reloader
from .reuseport import AdoptedListeners, EndpointFor, check_workers
from .worker_pipes import WorkerHandoff
from .workers import WorkerPool, listening_service

log = Logger()


def _default_reactor() -> IGatewayReactor:
    # twistd's: the one --reactor chose, or Twisted's default for the platform.
    from twisted.internet import reactor

    return cast(IGatewayReactor, reactor)


def check_endpoints(config: Config, reactor: IReactorCore) -> None:
    """
    Parse every listen endpoint, raising ConfigError for a bad one.

    An C{ssl:} endpoint reads its key and certificate here, so a missing or
    bad file is reported now rather than after the daemon has started.
    """
    for description in config.gateway.listen:
        try:
            server_endpoint(reactor, description, tls_min_version=config.gateway.tls_min_version)
        except Exception as e:
            message = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(
                f"{config.path}: [gateway] listen: bad endpoint {description!r}: {message}"
            ) from None


def _endpoint_for(config: Config) -> EndpointFor:
    return partial(server_endpoint, tls_min_version=config.gateway.tls_min_version)


def check_auth(config: Config) -> None:
    """
    Read the users file of an C{[auth]} section, raising ConfigError if it is bad.
    """
    if config.auth is not None and any(route.auth == "basic" for route in config.routes):
        load_users(config.auth.users_file)


class Options(usage.Options):
    synopsis = "[--config FILE] [--listen ENDPOINT ...]"
    longdesc = (
        "Serve AWS Lambda functions over HTTP.  Each [route:PREFIX] section of the"
        " config file exposes the functions under one URL prefix."
    )
    optParameters = [
        ["config", "c", "etc/gw.ini", "The gateway's INI config file."],
    ]

    def __init__(
        self,
        reactor: IGatewayReactor | None = None,
        *,
        credentials: CredentialProvider | None = None,
        credentials_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        super().__init__()
        self["listen"] = []
        self._reactor = reactor
        self.credentials: CredentialProvider = credentials or BotocoreCredentials()
        """Where AWS credentials come from (botocore); tests give their own."""
        self._credentials_timeout = credentials_timeout
        self._error: str | None = None
        self.config: Config | None = None
        self.resolved: Mapping[CredentialSpec, Resolved] = {}
        """AWS credentials resolved while parsing, for the gateway to adopt."""

    def opt_listen(self, description: str) -> None:
        """
        An endpoint to listen on, e.g. tcp:8080 (repeatable; replaces the config's listen).
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        """
        Read and check the config file, and resolve AWS credentials.

        C{--listen} values replace the file's C{listen} as given: their
        relative file names are the caller's current directory's, while
        the file's are its own directory's.
        """
        reactor = self._reactor if self._reactor is not None else _default_reactor()
        try:
            config = load_config(self["config"])
            if self["listen"]:
                gateway = replace(config.gateway, listen=tuple(self["listen"]))
                config = replace(config, gateway=gateway)
            check_endpoints(config, reactor)
            check_workers(config, _endpoint_for(config))
            check_auth(config)
            check_aws_routes(config)
            self.resolved = resolve_at_startup(config, self.credentials, self._credentials_timeout)
        except ConfigError as e:
            self._error = str(e)
            raise usage.UsageError(str(e)) from None
        self.config = config

    def getUsage(self, width: int | None = None) -> str:
        # After a config error the usage text would only bury the one line
        # that matters.
        if self._error is not None:
            return ""
        usage_text: str = super().getUsage(width)
        return usage_text


class CommandLineOptions(Options):
    """
    The options as C{twistd lambdagw} and C{twist lambdagw} parse them.

    A config error is printed here, as the one line it is, and ends the
    process with status 1.  Left to them as a UsageError, twistd would print
    its usage banner, a blank line and C{argv[0]} (the virtualenv's path)
    before the line, on stdout, and twist would print C{Error:} and the
    usage text and exit 64.  C{SystemExit} passes through both: they catch
    only UsageError around option parsing.
    """

    def __init__(
        self, reactor: IGatewayReactor | None = None, *, stderr: TextIO | None = None
    ) -> None:
        super().__init__(reactor)
        self._stderr = stderr

    def postOptions(self) -> None:
        try:
            super().postOptions()
        except usage.UsageError:
            if self._error is None:
                raise
            print(self._error, file=self._stderr or sys.stderr, flush=True)
            raise SystemExit(1) from None


def makeService(
    options: Options,
    reactor: IGatewayReactor | None = None,
    *,
    pool: KeepAliveAgent | None = None,
    install_signal: SignalInstaller = signal.signal,
    worker: WorkerHandoff | None = None,
    tune_gc: bool | None = None,
) -> IService:
    """
    The gateway service: the gateway's own service, then the listeners.

    Stopping it (SIGTERM) stops the listeners first, then drains the
    requests under way, then closes the upstream pool.

    twistd passes only C{options}; C{reactor}, C{pool} (the upstream
    connection pool, closed when the service stops) and C{install_signal}
    are for tests.  C{worker} is what a worker process was handed by its
    parent (see L{twisted_lambdagw.daemon.workers}).  C{tune_gc}: once the reactor
    runs, freeze what startup made and raise the collector's thresholds, the
    young one with the requests being served (L{GCTuning}); by default only
    when twistd calls (with no reactor given), as it changes the whole
    process.
    """
    if tune_gc is None:
        tune_gc = reactor is None
    reactor = reactor if reactor is not None else _default_reactor()
    config = options.config
    assert config is not None, "the options were not parsed"
    gateway = Gateway(
        config,
        reactor,
        pool=pool,
        credentials=options.credentials,
        resolved=options.resolved,
        worker_id=worker.worker_id if worker is not None else 0,
    )
    site = gateway.site()
    tls_min_version = config.gateway.tls_min_version
    shared: WorkerPool | AdoptedListeners | None = None
    if worker is not None or config.gateway.workers > 1:
        shared = listening_service(
            config, options, site, reactor, worker, endpoint_for=_endpoint_for(config)
        )
    access_log = gateway.access_log
    reopen = None
    if access_log is not None and access_log.target != STDOUT:
        reopen = access_log.reopen
    tls: list[tuple[str, ReloadableTLS]] = []
    if shared is not None:
        tls = [
            (one.description, one.tls)
            for one in shared.listeners
            if isinstance(one.tls, ReloadableTLS)
        ]
    listening_endpoints = []
    if shared is None:
        for description in config.gateway.listen:
            made: list[ReloadableTLS] = []
            listening_endpoints.append(
                server_endpoint(
                    reactor, description, tls_min_version=tls_min_version, tls_contexts=made
                )
            )
            tls += [(description, context) for context in made]
    reloader = Reloader(
        config,
        gateway,
        site,
        listen=options["listen"],
        tls=tls,
        workers=shared if isinstance(shared, WorkerPool) else None,
        reopen=reopen,
    )
    # SIGHUP: the parent reloads the file (and hands the result to its
    # workers); a worker, which gets its configuration from the parent,
    # only reopens its access log on a SIGHUP of its own.
    top = DaemonService(
        reactor, reopen=reloader if worker is None else reopen, install_signal=install_signal
    )
    top.reloader = reloader
    if isinstance(shared, WorkerPool):
        # Stopped with the rest, it waits for the workers to exit.
        shared.exited.setServiceParent(top)
    # MultiService stops its children last first: the listeners stop
    # accepting before the gateway starts draining.
    gateway.service.setServiceParent(top)
    if shared is not None:
        shared.setServiceParent(top)
    for endpoint in listening_endpoints:
        listening = StreamServerEndpointService(endpoint, site)
        # As strports.service does: a port that cannot be bound fails
        # startup instead of being logged by a daemon that serves nothing.
        raise_synchronously(listening)
        listening.setServiceParent(top)
    for description in config.gateway.listen:
        if description.lower().startswith("ssl:") and worker is None:
            log.info(
                "TLS on {listen}: minimum TLS {version}, HTTP/2 {http2}",
                listen=description,
                version=tls_min_version,
                http2="offered by ALPN" if http2_available() else "unavailable (no h2 package)",
            )
    if tune_gc:
        # Once the reactor runs, everything startup made is there to be frozen.
        reactor.callWhenRunning(GCTuning().start, lambda: gateway.resource.active, reactor)
    return top
