"""
A route's effective settings, as C{lambdagw check} prints them.

One block per route: its prefix, then one C{key: value} line per setting,
after defaults and inheritance (C{[gateway] timeout}, C{[aws]} region and
role) are applied, so an operator sees what the gateway will do rather
than what the file happens to spell out.  Each part of a route's policy
chain has a function of its own here; a new part (authorizers, CORS,
limits) adds its lines in L{front_door_lines}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twisted_lambdagw.core.authorizers import describe
from twisted_lambdagw.core.config import FUNCTION_ARN, Config, RouteConfig
from twisted_lambdagw.core.errors import GatewayError
from twisted_lambdagw.invokers.aws.endpoints import EndpointSpec
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult

INDENT = "  "
WIDTH = 18
"""The column the values start at, after the indent."""


def route_table(
    config: Config,
    endpoints: Mapping[EndpointSpec, str] | None = None,
    chains: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """
    Every route's block, longest prefix first (the order they match in).

    C{endpoints} maps AWS routes' endpoint specs to their URLs (as
    L{twisted_lambdagw.gateway.check_aws_routes} resolved them); C{chains}
    each route's policy chain (L{describe_chains}), by prefix.
    """
    blocks = []
    for route in sorted(config.routes, key=lambda r: len(r.prefix), reverse=True):
        chain = (chains or {}).get(route.prefix, ())
        body = route_lines(config, route, endpoints or {}, chain)
        blocks.append("\n".join([f"[route:{route.prefix}]", *(INDENT + line for line in body)]))
    return "\n\n".join(blocks)


def route_lines(
    config: Config,
    route: RouteConfig,
    endpoints: Mapping[EndpointSpec, str],
    chain: Sequence[str] = (),
) -> list[str]:
    """
    One route's settings, one line each, without indentation.
    """
    return [
        *backend_lines(config, route, endpoints),
        *front_door_lines(config, route, chain),
        *naming_lines(route),
        *invoke_lines(route),
    ]


def backend_lines(
    config: Config, route: RouteConfig, endpoints: Mapping[EndpointSpec, str]
) -> list[str]:
    """
    Where the route's functions run.
    """
    if route.backend == "local":
        assert config.local is not None
        return [_line("backend", f"local, functions in {config.local.functions_dir}")]
    from twisted_lambdagw.gateway import endpoint_spec

    endpoint = endpoints.get(endpoint_spec(config, route), "(resolved at startup)")
    lines = [
        _line("backend", "aws"),
        _line("region", route.region or "-"),
        _line("endpoint", endpoint),
        _line("qualifier", _qualifier(route)),
    ]
    if route.role_arn is not None:
        lines.append(_line("role_arn", route.role_arn))
    if route.aws_access is not None:
        lines.append(_line("credentials", f"route's own aws_access {route.aws_access}"))
    return lines


def front_door_lines(config: Config, route: RouteConfig, chain: Sequence[str] = ()) -> list[str]:
    """
    What a request must pass before any invoke: authorization, then the
    route's policy chain (CORS, limits and their store, authorization,
    admission), one line per step in the order they run.
    """
    if route.auth == "basic":
        assert config.auth is not None
        auth = f"basic, realm {config.auth.realm!r}, users in {config.auth.users_file}"
    else:
        authorizers = {a.name: a for a in config.authorizers}
        found = authorizers.get(route.auth)
        auth = route.auth if found is None else describe(found, route.scopes)
    return [_line("auth", auth), *(_line("chain", step) for step in chain)]


def describe_chains(config: Config) -> dict[str, list[str]]:
    """
    Each route's policy chain as C{Chain.describe()} gives it, built as the
    gateway builds it but connecting nowhere (no limits store is reached).
    """
    from treq.client import HTTPClient
    from twisted.internet.defer import succeed
    from twisted.internet.testing import MemoryReactorClock
    from twisted.web.client import Agent

    from twisted_lambdagw.policies.auth import basic_authenticator
    from twisted_lambdagw.policies.authorizers.service import Authorizers
    from twisted_lambdagw.policies.build import PolicyServices, build_chain
    from twisted_lambdagw.policies.inflight import InFlight
    from twisted_lambdagw.policies.limits.service import named_store

    # A reactor that connects nowhere: the chains are built to be described,
    # never to serve, so no issuer or limits store is reached.
    clock = MemoryReactorClock()
    authenticator = None
    if config.auth is not None and any(r.auth == "basic" for r in config.routes):
        authenticator = basic_authenticator(
            config.auth.users_file, config.auth.realm, lambda f: succeed(f())
        )
    services = PolicyServices(
        clock,
        in_flight=InFlight(config.gateway.max_in_flight),
        authenticator=authenticator,
        limits_store=named_store(config.gateway.limits_store, clock),
        authorizers=Authorizers(
            config, clock, lambda _: HTTPClient(Agent(clock)), lambda _: _NOT_SERVING
        ),
    )
    return {r.prefix: build_chain(r, config, services).describe() for r in config.routes}


def naming_lines(route: RouteConfig) -> list[str]:
    """
    Which function a path invokes.
    """
    if route.single is not None:
        return [_line("single", f"{route.single} (every path invokes it)")]
    return [
        _line("function", f"{route.name_prepend}<name>{route.name_append}"),
        _line("name_prepend", repr(route.name_prepend)),
        _line("name_append", repr(route.name_append)),
        _line("include", " ".join(route.include) or "* (every name)"),
        _line("exclude", " ".join(route.exclude) or "-"),
    ]


def invoke_lines(route: RouteConfig) -> list[str]:
    """
    How the request is handed over and the reply awaited.
    """
    stream = "no"
    if route.stream:
        stream = f"yes, idle timeout {route.stream_idle_timeout:g}s, prelude {route.stream_prelude}"
    headers = [f"{h.name}: {h.template}" for h in route.header_upstream] or ["-"]
    return [
        _line("format", route.format),
        _line("invocation_type", route.invocation_type),
        _line("stream", stream),
        _line("timeout", f"{route.timeout:g}s"),
        _line("strip_path_prefix", "yes" if route.strip_path_prefix else "no"),
        *(_line("header_upstream", header) for header in headers),
    ]


def _qualifier(route: RouteConfig) -> str:
    if route.qualifier is not None:
        return route.qualifier
    arn = FUNCTION_ARN.fullmatch(route.single) if route.single else None
    if arn is not None and arn["qualifier"]:
        return f"{arn['qualifier']} (from the ARN in single)"
    return "$LATEST (none set)"


def _line(key: str, value: str) -> str:
    return f"{key + ':':<{WIDTH}} {value}"


class _NotServing:
    """
    The invoker of a Lambda authorizer in a chain built only to be described.
    """

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        raise GatewayError(detail=f"{call.function}: lambdagw check invokes nothing")


_NOT_SERVING = _NotServing()
