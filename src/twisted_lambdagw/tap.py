"""
``twistd lambdagw`` / ``twist lambdagw``: command-line options and the service.

The config file is read and checked while the options are parsed, so every
config or endpoint error ends startup with one line, before anything listens.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from .config import Config, ConfigError, load_config
from .gateway import Gateway
from .request import request_factory
from .reuseport import check_workers
from .workers import WorkerHandoff, listening_service

SITE_TIMEOUT = 60.0


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def check_endpoints(config: Config, reactor: Any) -> None:
    """
    Parse every listen endpoint, raising ConfigError for a bad one.

    An ``ssl:`` endpoint reads its key and certificate here, so a missing
    file is reported now rather than after the daemon has started.
    """
    for description in config.gateway.listen:
        try:
            serverFromString(reactor, description)
        except Exception as e:
            message = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(
                f"{config.path}: [gateway] listen: bad endpoint {description!r}: {message}"
            ) from None


class Options(usage.Options):
    synopsis = "[--config FILE] [--listen ENDPOINT ...]"
    longdesc = (
        "Serve AWS Lambda functions over HTTP.  Each [route:PREFIX] section of the"
        " config file exposes the functions under one URL prefix."
    )
    optParameters = [
        ["config", "c", "etc/gw.ini", "The gateway's INI config file."],
    ]

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self["listen"] = []
        self._reactor = reactor
        self._error: str | None = None
        self.config: Config | None = None

    def opt_listen(self, description: str) -> None:
        """
        An endpoint to listen on, e.g. tcp:8080 (repeatable; replaces the config's listen).
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        reactor = self._reactor if self._reactor is not None else _default_reactor()
        try:
            config = load_config(self["config"])
            if self["listen"]:
                gateway = replace(config.gateway, listen=tuple(self["listen"]))
                config = replace(config, gateway=gateway)
            check_endpoints(config, reactor)
            check_workers(config, serverFromString)
        except ConfigError as e:
            # twistd prints this object's usage text before the error line;
            # after a config error that text would only bury the one line
            # that matters.
            self._error = str(e)
            raise usage.UsageError(str(e)) from None
        self.config = config

    def getUsage(self, width: int | None = None) -> str:
        if self._error is not None:
            return ""
        usage_text: str = super().getUsage(width)
        return usage_text


def makeService(
    options: Options,
    reactor: Any = None,
    *,
    pool: HTTPConnectionPool | None = None,
    worker: WorkerHandoff | None = None,
) -> IService:
    """
    The gateway service: the listeners, and what owns the upstream pool.

    twistd passes only C{options}; C{reactor} and C{pool} (the upstream
    connection pool, closed when the service stops) are for embedding and
    tests; C{worker} is what a worker process was handed (L{workers}).
    """
    reactor = reactor if reactor is not None else _default_reactor()
    config = options.config
    assert config is not None, "the options were not parsed"
    gateway = Gateway(config, reactor, pool=pool, worker_id=worker.worker_id if worker else 0)
    top = MultiService()
    gateway.service.setServiceParent(top)
    site = Site(gateway.resource, timeout=SITE_TIMEOUT)
    site.requestFactory = request_factory(config.gateway.max_body_size)
    site.displayTracebacks = False
    if worker is not None or config.gateway.workers > 1:
        listening = listening_service(
            config, options, site, reactor, worker, endpoint_for=serverFromString
        )
        listening.setServiceParent(top)
        return top
    for description in config.gateway.listen:
        strports.service(description, site, reactor=reactor).setServiceParent(top)
    return top
