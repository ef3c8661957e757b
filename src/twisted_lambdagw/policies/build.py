"""
Composing each route's chain from the config, once, at startup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime

from twisted_lambdagw.core.config import Config, ConfigError, RouteConfig

from .basic import Authenticator, BasicAuth
from .chain import Chain, Step, SyncStep
from .checks import NameCheck
from .cors.step import CorsStep
from .inflight import Admission, InFlight
from .limits.service import SharedStore
from .limits.step import limit_step

if TYPE_CHECKING:
    from twisted_lambdagw._types import RunInThread
    from twisted_lambdagw.observe.metrics import GatewayMetrics

    from .authorizers.service import Authorizers


@dataclass
class PolicyServices:
    """
    What the steps of every route share, all injected.

    @ivar clock: the reactor's time.
    @ivar run_in_thread: runs blocking work (bcrypt, say) in the reactor's
        thread pool; None where nothing needs it.
    @ivar metrics: the gateway's metrics (with their registry), or None
        when C{metrics_path} is off.
    @ivar in_flight: the process's invocations under way and their ceiling
        (C{max_in_flight}), shared by every route's admission.
    @ivar authenticator: the C{[auth]} users file's login check, for
        C{auth = basic} routes; None when the config has no such route.
    @ivar limits_store: where every route's rate limits and quotas count
        (C{[gateway] limits_store}); None when no route has limits.
    """

    clock: IReactorTime
    run_in_thread: RunInThread | None = None
    metrics: GatewayMetrics | None = None
    in_flight: InFlight = field(default_factory=InFlight)
    authenticator: Authenticator | None = None
    limits_store: SharedStore | None = None
    authorizers: Authorizers | None = None
    """The C{[authorizer:NAME]} steps (JWT, Lambda) for routes naming one."""


def build_chain(route: RouteConfig, config: Config, services: PolicyServices) -> Chain:
    """
    The chain of C{route}'s configured policies; ConfigError if one cannot be built.
    """
    steps: list[Step | SyncStep] = []
    if route.cors is not None:
        steps.append(CorsStep(route.cors))
    if route.limits is not None:
        shared = services.limits_store
        if shared is None:
            raise ConfigError(
                f"{config.path}: [route:{route.prefix}] rate_limit: no limits store to count in"
            )
        steps.append(
            limit_step(
                route.limits,
                shared.store,
                shared.health,
                route=route.prefix,
                down=shared.config.down,
            )
        )
    if route.auth == "basic":
        if services.authenticator is None:
            raise ConfigError(
                f"{config.path}: [route:{route.prefix}] auth: 'basic' needs an [auth]"
                " section with a users_file"
            )
        steps.append(BasicAuth(services.authenticator))
    elif route.auth != "none":
        authorizer = services.authorizers.step_for(route) if services.authorizers else None
        if authorizer is None:
            raise ConfigError(
                f"{config.path}: [route:{route.prefix}] auth: no [authorizer:{route.auth}]"
            )
        steps.append(authorizer)
    steps += admit_steps(services.in_flight)
    return Chain(steps)


def admit_steps(in_flight: InFlight) -> list[Step | SyncStep]:
    """
    The steps every route ends with: the name and body checks, the admission.
    """
    return [NameCheck(), Admission(in_flight)]


def open_chain(in_flight: InFlight) -> Chain:
    """
    The chain of a route with no policies configured.
    """
    return Chain(admit_steps(in_flight))
