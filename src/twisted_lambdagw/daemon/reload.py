"""
SIGHUP: read the config file again and serve it, without a restart.

What a reload changes, and what it cannot:

- Everything a request is served with (routes, the users file, C{[aws]}
  and C{[local]} settings) is rebuilt off to the side by
  L{twisted_lambdagw.gateway.Gateway.reload} and swapped in at once;
  requests in flight finish with what they started with.
- C{[gateway]} settings apply to new requests (C{max_in_flight},
  C{health_path}, C{trusted_proxies}, C{drain_timeout}) or new
  connections (C{max_body_size}, C{header_timeout}, C{idle_timeout}).
- C{ssl:} listeners read their key and certificate files again: the next
  TLS handshake uses the new certificate; a bad pair is logged and the
  old one kept.
- L{STARTUP_ONLY} keys are the sockets, the processes and the files opened
  at startup: a change is logged as needing a restart, and the rest applies.
- A file that cannot be served (any config error) is refused with one log
  line naming file, section and key; the running configuration stays.
- With C{workers = N} the parent reads the file and hands the resulting
  configuration to every worker on its pipe (L{WorkerPool.reload}); each
  applies it as the parent does, and a worker started later gets it too, so
  every process serves the same configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from twisted_lambdagw.core.config import Config, ConfigError
from twisted_lambdagw.core.config_reader import load_config
from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.policies.auth import load_users
from twisted_lambdagw.server.request import request_factory
from twisted_lambdagw.server.site import GatewaySite

from .listen import ReloadableTLS

STARTUP_ONLY = ("listen", "workers", "tls_min_version", "access_log", "metrics_path")
"""C{[gateway]} keys a reload cannot change: they need a restart."""


class ConfigReceiver(Protocol):
    """
    Where a parent's new configuration goes: its workers.
    """

    def reload(self, config: Config) -> None:
        """
        Hand C{config} to every worker.
        """

    def reopen_logs(self) -> None:
        """
        Have every worker reopen its access log.
        """


def restart_needed(running: Config, new: Config) -> list[str]:
    """
    The L{STARTUP_ONLY} keys whose value differs in C{new}.
    """
    return [
        key for key in STARTUP_ONLY if getattr(running.gateway, key) != getattr(new.gateway, key)
    ]


def keep_startup_keys(running: Config, new: Config) -> Config:
    """
    C{new}, with the L{STARTUP_ONLY} keys as C{running} has them.
    """
    kept = {key: getattr(running.gateway, key) for key in STARTUP_ONLY}
    return replace(new, gateway=replace(new.gateway, **kept))


def read_config(path: str, listen: Sequence[str] = ()) -> Config:
    """
    The config file as startup reads it (C{--listen} replacing its
    C{listen}), its users file checked; raises L{ConfigError}.
    """
    config = load_config(path)
    if listen:
        config = replace(config, gateway=replace(config.gateway, listen=tuple(listen)))
    if config.auth is not None and any(route.auth == "basic" for route in config.routes):
        load_users(config.auth.users_file)
    return config


class Reloader:
    """
    Applies a new configuration to one process's gateway, site and listeners.

    Called with no argument (the parent's SIGHUP), it reopens the access log
    (and has every worker reopen its own, whether or not the file can be
    served) and reloads the config file; L{apply} takes a
    configuration read elsewhere (a worker's, from its parent).  One reload
    runs at a time.

    @param tls: the C{ssl:} listeners' certificates, read again each time.
    @param workers: in a parent with workers, where each applied
        configuration is handed on.
    @param reopen: reopens the access log.
    @param read: reads the config file (L{read_config} by default).
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        site: GatewaySite,
        *,
        listen: Sequence[str] = (),
        tls: Sequence[tuple[str, ReloadableTLS]] = (),
        workers: ConfigReceiver | None = None,
        reopen: Callable[[], None] | None = None,
        read: Callable[[str, Sequence[str]], Config] = read_config,
    ) -> None:
        self.config = config
        """The configuration serving now."""
        self._gateway = gateway
        self._site = site
        self._listen = tuple(listen)
        self._tls = list(tls)
        self._workers = workers
        self._reopen = reopen
        self._read = read
        self._lock = DeferredLock()

    def __call__(self) -> Deferred[bool]:
        """
        Reopen the access log, then reload the config file.
        """
        if self._reopen is not None:
            self._reopen()
        if self._workers is not None:
            self._workers.reopen_logs()
        return self._lock.run(lambda: Deferred.fromCoroutine(self._reload_file()))

    def apply(self, config: Config) -> Deferred[bool]:
        """
        Serve C{config}, read by the parent.
        """
        return self._lock.run(lambda: Deferred.fromCoroutine(self._apply(config)))

    async def _reload_file(self) -> bool:
        path = self.config.path
        self.log.info("received SIGHUP: reloading {path}", path=path)
        try:
            config = self._read(path, self._listen)
        except ConfigError as error:
            self._refused(error)
            return False
        for key in restart_needed(self.config, config):
            self.log.warn(
                "{path}: [gateway] {key} changed: it takes effect after a restart;"
                " the rest of the file applies now",
                path=path,
                key=key,
            )
        return await self._apply(keep_startup_keys(self.config, config))

    async def _apply(self, config: Config) -> bool:
        try:
            await self._gateway.reload(config)
        except ConfigError as error:
            self._refused(error)
            return False
        except Exception:
            self.log.failure("reload failed, the running configuration stays")
            return False
        self.config = config
        settings = config.gateway
        self._site.requestFactory = request_factory(settings.max_body_size)
        self._site.header_timeout = settings.header_timeout
        self._site.timeOut = settings.idle_timeout
        for description, tls in self._tls:
            try:
                tls.reload()
            except ValueError as error:
                self.log.error(
                    "{path}: [gateway] listen: certificate of {listen} not reloaded: {error};"
                    " new connections keep the previous one",
                    path=config.path,
                    listen=description,
                    error=" ".join(str(error).split()),
                )
        if self._workers is not None:
            self._workers.reload(config)
        return True

    def _refused(self, error: ConfigError) -> None:
        self.log.error(
            "reload refused, the running configuration stays: {error}",
            error=" ".join(str(error).split()),
        )
