"""
AWS credentials for signing, kept fresh without a request ever waiting.

Where credentials come from is botocore's business: its default chain
(environment, profile, SSO, web identity / IRSA, container role, instance
metadata) and its STS role assumption.  Every one of those may do blocking
network I/O, so under Twisted they run in threads:

  - at startup the chain is resolved (and a role assumed) in a thread, and
    a log line names the provider that won, never the keys;
  - while serving, a timer on the gateway's clock checks botocore's refresh
    window every minute and refreshes in a thread, so requests keep signing
    with the current keys, copied once per refresh;
  - only when credentials are within a minute of expiring (every refresh
    failed) does a request wait, for one shared refresh;
  - after Lambda says C{ExpiredTokenException} the invoker asks for a
    forced refresh, which resolves the whole source again.

Startup failure, decided here: twistd cannot fail asynchronously once the
reactor runs (the daemon's parent has already reported success, and a
service has no way to set the exit status), so C{twistd lambdagw} resolves
credentials in L{resolve_at_startup} while it parses its options, before
the reactor runs and before it daemonizes: in daemon threads, with a bounded
wait, turning "none found", a failure or a timeout into one
C{ConfigError} line (and so a C{UsageError}).  The gateway then adopts
what was resolved.  A gateway embedded in another application, which has no
such moment, resolves in L{CredentialsService.startService} instead and logs
the failure; its AWS requests then fail with 502 and retry the lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from botocore.credentials import Credentials, ReadOnlyCredentials
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_lambdagw._types import RunInThread
from twisted_lambdagw.core.config import AWSConfig, Config, ConfigError, RouteConfig
from twisted_lambdagw.core.describe import one_line
from twisted_lambdagw.core.errors import InvokeFailed

if TYPE_CHECKING:
    from botocore.session import Session

T = TypeVar("T")
Resolved = tuple[Credentials, ReadOnlyCredentials]
"""Credentials as botocore holds them, and the keys copied from them."""

STARTUP_TIMEOUT = 30.0
"""Seconds C{twistd} waits for credentials before giving up on startup."""

CHAIN = "environment, profile, SSO, web identity, container role, instance metadata"


class NoCredentials(Exception):
    """
    The source found no credentials at all.
    """


@dataclass(frozen=True, slots=True)
class CredentialSpec:
    """
    Where a route's credentials come from; routes with equal specs share one source.

    Static keys (C{access_key}) are used as they are, or as the base of a
    role; with neither keys nor role it is botocore's default chain for
    C{profile}.  C{region} is where STS is called for a role.
    """

    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    role_session_name: str = "lambdagw"
    region: str | None = None

    @property
    def static(self) -> bool:
        """
        Keys given in the config and nothing to resolve: no thread, no refresh.
        """
        return self.access_key is not None and self.role_arn is None

    def describe(self) -> str:
        """
        Where the credentials come from, for log lines; never a key.
        """
        if self.access_key is not None:
            base = "static keys from the config"
        elif self.profile is not None:
            base = f"botocore's default chain with profile {self.profile!r}"
        else:
            base = "botocore's default chain"
        if self.role_arn is None:
            return base
        return f"role {self.role_arn} assumed with {base}"


def credential_spec(aws: AWSConfig, route: RouteConfig) -> CredentialSpec:
    """
    The credential spec of an AWS route: route keys, else C{[aws]} keys, else the chain.
    """
    if route.aws_access is not None and route.aws_secret is not None:
        keys: tuple[str | None, str | None, str | None] = (route.aws_access, route.aws_secret, None)
    else:
        keys = (aws.access_key_id, aws.secret_access_key, aws.session_token)
    role = route.role_arn
    return CredentialSpec(
        access_key=keys[0],
        secret_key=keys[1],
        session_token=keys[2],
        profile=aws.profile if keys[0] is None else None,
        role_arn=role,
        external_id=route.external_id if role else None,
        role_session_name=route.role_session_name if role else "lambdagw",
        region=(aws.region or route.region) if role else None,
    )


class CredentialProvider(Protocol):
    """
    Turns a spec into botocore credentials.  Blocking: called in a thread.
    """

    def resolve(self, spec: CredentialSpec) -> Credentials | None: ...


def _default_session(profile: str | None) -> Session:
    import botocore.session

    return botocore.session.Session(profile=profile)


class BotocoreCredentials:
    """
    The real provider: botocore's chain, and its AssumeRole fetcher for roles.

    @param session_for: a botocore session for a profile name (None: the
        default); tests give sessions whose C{credential_provider}
        component is a resolver of their own.
    @param sts_endpoint_url: where STS calls go instead of the region's
        endpoint (C{AWS_ENDPOINT_URL_STS} works too, through botocore).
    """

    def __init__(
        self,
        session_for: Callable[[str | None], Session] = _default_session,
        sts_endpoint_url: str | None = None,
    ) -> None:
        self._session_for = session_for
        self._sts_endpoint_url = sts_endpoint_url

    def resolve(self, spec: CredentialSpec) -> Credentials | None:
        base: Credentials | None
        if spec.access_key is not None:
            base = Credentials(
                spec.access_key, spec.secret_key, spec.session_token, method="config-keys"
            )
        else:
            base = self._session_for(spec.profile).get_credentials()
        if base is None or spec.role_arn is None:
            return base
        return self._assume_role(base, spec)

    def _assume_role(self, base: Credentials, spec: CredentialSpec) -> Credentials:
        from botocore.config import Config as ClientConfig
        from botocore.credentials import (
            AssumeRoleCredentialFetcher,
            DeferredRefreshableCredentials,
        )

        session = self._session_for(spec.profile)
        client_config = ClientConfig(
            connect_timeout=10, read_timeout=30, retries={"mode": "standard"}
        )

        def sts_client(service: str, **kwargs: Any) -> Any:
            return session.create_client(
                service,
                region_name=spec.region,
                endpoint_url=self._sts_endpoint_url,
                config=client_config,
                **kwargs,
            )

        extra: dict[str, str] = {"RoleSessionName": spec.role_session_name}
        if spec.external_id is not None:
            extra["ExternalId"] = spec.external_id
        fetcher = AssumeRoleCredentialFetcher(sts_client, base, spec.role_arn, extra_args=extra)
        return DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=f"assume-role over {base.method}"
        )


def resolve_now(provider: CredentialProvider, spec: CredentialSpec) -> Resolved | None:
    """
    Resolve a spec and fetch its first keys.  Blocking: for threads only.

    Fetching now makes lazily fetched credentials (assumed roles, SSO) fail
    at startup rather than on the first request.
    """
    credentials = provider.resolve(spec)
    if credentials is None:
        return None
    return credentials, credentials.get_frozen_credentials()


def _refreshable(credentials: Credentials) -> bool:
    return callable(getattr(credentials, "refresh_needed", None))


class CredentialSource:
    """
    The credentials one set of routes signs with, and their refreshing.

    Static keys are used as they are.  Otherwise C{resolve} (blocking; run
    through C{run_in_thread}) finds them.  The keys a request signs with
    are a copy taken in the thread that resolved or refreshed them, so the
    reactor thread never calls into botocore's refresh logic.

    @param clock: drives the refresh timer; without one there is no timer,
        and requests refresh (in a thread) once credentials near expiry.
    @param name: what the log lines call this source, e.g. its routes.
    """

    log = Logger()

    check_interval = 60.0
    """Seconds between checks of botocore's refresh window."""
    expiry_margin = 60.0
    """Closer to expiry than this, a request waits for fresh credentials."""

    def __init__(
        self,
        run_in_thread: RunInThread,
        *,
        static: ReadOnlyCredentials | None = None,
        resolve: Callable[[], Credentials | None] | None = None,
        clock: IReactorTime | None = None,
        name: str = "AWS routes",
        description: str = "",
    ) -> None:
        self._run_in_thread = run_in_thread
        self._resolve = resolve
        self._static = static
        self._clock = clock
        self.name = name
        self.description = description
        self._credentials: Credentials | None = None
        self._snapshot: ReadOnlyCredentials | None = None
        self._waiting: list[Deferred[None]] | None = None
        self._timer: LoopingCall | None = None
        self._announced = False

    @classmethod
    def from_keys(
        cls,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        *,
        name: str = "AWS routes",
        description: str = "static keys",
    ) -> CredentialSource:
        """
        A source of fixed keys; nothing to resolve, nothing to refresh.
        """

        def no_threads(f: Callable[[], T], /) -> Deferred[T]:
            raise AssertionError("static credentials never need a thread")

        keys = ReadOnlyCredentials(access_key, secret_key, token, None)
        return cls(no_threads, static=keys, name=name, description=description)

    @property
    def method(self) -> str | None:
        """
        Which botocore provider found the credentials (C{env}, C{iam-role}, ...).
        """
        if self._static is not None:
            return "config-keys"
        return getattr(self._credentials, "method", None)

    def adopt(self, resolved: Resolved) -> None:
        """
        Use credentials resolved elsewhere, e.g. before the reactor started.
        """
        self._credentials, self._snapshot = resolved

    async def start(self) -> None:
        """
        Resolve the credentials (unless adopted), log their provider, start the timer.

        Raises L{NoCredentials} when there are none, or what resolving raised.
        """
        if self._credentials is None and self._static is None:
            await self._shared(self._lookup)
        self.log.info(
            "AWS credentials for {routes}: {method} ({description})",
            routes=self.name,
            method=self.method,
            description=self.description,
        )
        self._announced = True
        if self._credentials is None:
            return
        if self._clock is not None and _refreshable(self._credentials) and self._timer is None:
            self._timer = LoopingCall(self.refresh_if_due)
            self._timer.clock = self._clock
            self._timer.start(self.check_interval, now=False).addErrback(
                lambda f: self.log.failure("credential refresh timer stopped", f)
            )

    def stop(self) -> None:
        """
        Stop the refresh timer.
        """
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self._timer = None

    def refresh_if_due(self) -> Deferred[None]:
        """
        Refresh in a thread if botocore says it is time; never fails.
        """
        credentials = self._credentials
        done: Deferred[None] = Deferred()
        if credentials is None or not _refreshable(credentials):
            done.callback(None)
            return done
        if not credentials.refresh_needed():
            done.callback(None)
            return done

        def failed(failure: Failure) -> None:
            self.log.warn(
                "refreshing AWS credentials for {routes} failed: {error};"
                " requests use the current ones until they expire",
                routes=self.name,
                error=one_line(failure.value),
            )

        refreshing = self._shared(lambda: (credentials, credentials.get_frozen_credentials()))
        refreshing.addErrback(failed)
        return refreshing

    async def frozen(self) -> ReadOnlyCredentials:
        """
        The keys to sign with now; raises L{InvokeFailed} when there are none.
        """
        if self._static is not None:
            return self._static
        try:
            if self._credentials is None:
                await self._shared(self._lookup)
            credentials, snapshot = self._credentials, self._snapshot
            assert credentials is not None and snapshot is not None
            if _refreshable(credentials) and credentials.refresh_needed(self.expiry_margin):
                await self._shared(lambda: (credentials, credentials.get_frozen_credentials()))
        except NoCredentials:
            raise InvokeFailed(detail=f"no AWS credentials ({self.description})") from None
        except (InvokeFailed, CancelledError):
            raise
        except Exception as e:
            raise InvokeFailed(detail=f"AWS credentials unavailable: {one_line(e)}") from None
        assert self._snapshot is not None
        return self._snapshot

    async def refreshed(self, stale: ReadOnlyCredentials) -> ReadOnlyCredentials | None:
        """
        Keys newer than C{stale}, resolving the source again if need be.

        For a call AWS refused as signed with expired keys.  None when there
        is nothing newer (static keys, or the source gave the same keys).
        """
        if self._static is not None:
            return None
        # Twice: the first wait may join a timer refresh that kept the old keys.
        for _ in range(2):
            if self._snapshot is not None and self._snapshot != stale:
                return self._snapshot
            try:
                await self._shared(self._lookup)
            except CancelledError:
                raise
            except Exception as e:
                self.log.warn(
                    "forced refresh of AWS credentials for {routes} failed: {error}",
                    routes=self.name,
                    error=one_line(e),
                )
                return None
        if self._snapshot is None or self._snapshot == stale:
            return None
        return self._snapshot

    def _lookup(self) -> Resolved | None:
        assert self._resolve is not None
        credentials = self._resolve()
        if credentials is None:
            return None
        return credentials, credentials.get_frozen_credentials()

    def _shared(self, job: Callable[[], Resolved | None]) -> Deferred[None]:
        """
        Run C{job} in a thread unless one is running; every caller waits for it.
        """
        waiter: Deferred[None] = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]

        def finished(result: Resolved | Failure | None) -> None:
            waiting, self._waiting = self._waiting or [], None
            outcome: Failure | None = None
            if isinstance(result, Failure):
                outcome = result
            elif result is None:
                outcome = Failure(NoCredentials(self.description))
            else:
                self.adopt(result)
                if self._announced:
                    self.log.info(
                        "AWS credentials for {routes} refreshed ({method})",
                        routes=self.name,
                        method=self.method,
                    )
            for each in waiting:
                if each.called:  # cancelled by its caller
                    continue
                if outcome is None:
                    each.callback(None)
                else:
                    each.errback(outcome)

        self._run_in_thread(job).addBoth(finished)
        return waiter


class CredentialsService(Service):
    """
    Starts every credential source with the gateway and stops their timers.
    """

    log = Logger()

    def __init__(self, sources: Iterable[CredentialSource]) -> None:
        self.sources = list(sources)

    def startService(self) -> None:
        super().startService()
        for source in self.sources:
            starting = Deferred.fromCoroutine(source.start())
            starting.addErrback(self._failed, source)

    def _failed(self, failure: Failure, source: CredentialSource) -> None:
        reason = "none found" if failure.check(NoCredentials) else one_line(failure.value)
        self.log.error(
            "no AWS credentials for {routes} ({description}): {reason};"
            " their requests fail with 502 until credentials can be found",
            routes=source.name,
            description=source.description,
            reason=reason,
        )

    def stopService(self) -> None:
        for source in self.sources:
            source.stop()
        super().stopService()


def route_names(routes: Sequence[RouteConfig]) -> str:
    return ", ".join(f"[route:{route.prefix}]" for route in routes)


def specs_by_route(config: Config) -> dict[CredentialSpec, list[RouteConfig]]:
    """
    The credential specs the config's AWS routes need, each with its routes.
    """
    from twisted_lambdagw.core.config import authorizer_routes

    specs: dict[CredentialSpec, list[RouteConfig]] = {}
    for route in (*config.routes, *authorizer_routes(config)):
        if route.backend == "aws":
            specs.setdefault(credential_spec(config.aws, route), []).append(route)
    return specs


def resolve_at_startup(
    config: Config,
    provider: CredentialProvider,
    timeout: float = STARTUP_TIMEOUT,
) -> Mapping[CredentialSpec, Resolved]:
    """
    Resolve every credential source the config needs, before the reactor runs.

    Each source resolves in a daemon thread of its own; all are waited for
    at most C{timeout} seconds in total (a thread cannot be stopped, but a
    daemon thread does not keep the process alive).  Raises L{ConfigError}
    with one line naming the routes when a source finds nothing, fails, or
    takes too long.
    """
    needed = {spec: routes for spec, routes in specs_by_route(config).items() if not spec.static}
    outcomes: dict[CredentialSpec, Resolved | BaseException | None] = {}
    threads = []
    for spec in needed:

        def run(spec: CredentialSpec = spec) -> None:
            try:
                outcomes[spec] = resolve_now(provider, spec)
            except BaseException as e:
                outcomes[spec] = e

        thread = threading.Thread(target=run, name="lambdagw-credentials", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    resolved: dict[CredentialSpec, Resolved] = {}
    for spec, routes in needed.items():
        where = f"{config.path}: {route_names(routes)}"
        if spec not in outcomes:
            raise ConfigError(
                f"{where}: looking up AWS credentials ({spec.describe()})"
                f" did not finish within {timeout:g}s"
            )
        outcome = outcomes[spec]
        if isinstance(outcome, BaseException):
            raise ConfigError(
                f"{where}: AWS credentials ({spec.describe()}) failed: {one_line(outcome)}"
            )
        if outcome is None:
            raise ConfigError(
                f"{where}: no AWS credentials found ({spec.describe()}: {CHAIN});"
                " set access_key_id and secret_access_key or a profile in [aws],"
                " or run with an IAM role"
            )
        resolved[spec] = outcome
    return resolved
