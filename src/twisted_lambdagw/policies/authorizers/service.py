"""
Authorizers, as API Gateway HTTP APIs have them: JWT and Lambda, steps of a route's chain.
"""

from __future__ import annotations

from collections.abc import Callable

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime

from ...core.authorizers import AuthorizerConfig, JWTAuthorizerConfig, LambdaAuthorizerConfig
from ...core.config import Config, RouteConfig
from ...invokers.base import Invoker
from .jwks import JWKSource
from .jwt import JWTAuthorizer
from .lambda_ import LambdaAuthorizer
from .tokens import TokenCache

Authorizer = JWTAuthorizer | LambdaAuthorizer


class Authorizers(Service):
    """
    Every configured authorizer, built once, and the steps routes use.

    Issuers' keys are shared by the JWT authorizers trusting the same key
    source; they are fetched when the service starts and kept fresh until it
    stops.  A Lambda authorizer (and its result cache) is shared by the
    routes naming it.

    @param http_client: makes the client fetching an issuer's keys, given the
        C{ca_file} its authorizer trusts (None: the system's CAs); one is made
        per distinct C{ca_file}.
    @param invoker_for: the invoker for a Lambda authorizer's function,
        made as the gateway makes a route's.
    """

    def __init__(
        self,
        config: Config,
        clock: IReactorTime,
        http_client: Callable[[str | None], HTTPClient],
        invoker_for: Callable[[LambdaAuthorizerConfig], Invoker],
    ) -> None:
        self._clock = clock
        self.keys: dict[tuple[str, str | None, str | None], JWKSource] = {}
        self.lambdas: dict[str, LambdaAuthorizer] = {}
        self.tokens: dict[str, TokenCache] = {}
        """The verified tokens of each JWT authorizer, shared by the routes naming it."""
        self.configs: dict[str, AuthorizerConfig] = {a.name: a for a in config.authorizers}
        used = {route.auth for route in config.routes}
        clients: dict[str | None, HTTPClient] = {}
        for authorizer in config.authorizers:
            if authorizer.name not in used:
                continue
            if isinstance(authorizer, JWTAuthorizerConfig):
                source = _source(authorizer)
                if source not in self.keys:
                    ca_file = authorizer.ca_file
                    if ca_file not in clients:
                        clients[ca_file] = http_client(ca_file)
                    self.keys[source] = JWKSource(
                        clients[ca_file],
                        clock,
                        authorizer.issuer,
                        authorizer.jwks_uri,
                        name=authorizer.name,
                    )
                tokens = self.tokens[authorizer.name] = TokenCache(clock)
                self.keys[source].on_rotate(tokens.forget_keys)
            elif isinstance(authorizer, LambdaAuthorizerConfig):
                invoker = invoker_for(authorizer)
                self.lambdas[authorizer.name] = LambdaAuthorizer(authorizer, invoker, clock)

    def step_for(self, route: RouteConfig) -> Authorizer | None:
        """
        The authorization step of C{route}, None for C{auth = none} or C{basic}.
        """
        authorizer = self.configs.get(route.auth)
        if isinstance(authorizer, JWTAuthorizerConfig):
            keys = self.keys[_source(authorizer)]
            tokens = self.tokens[authorizer.name]
            return JWTAuthorizer(authorizer, keys, self._clock, route.scopes, tokens)
        if isinstance(authorizer, LambdaAuthorizerConfig):
            return self.lambdas[authorizer.name]
        if route.auth not in ("none", "basic"):
            raise LookupError(f"no authorizer {route.auth!r}: the config was not checked")
        return None

    def startService(self) -> None:
        super().startService()
        for source in self.keys.values():
            source.start()

    def stopService(self) -> None:
        super().stopService()
        for source in self.keys.values():
            source.stop()


def _source(authorizer: JWTAuthorizerConfig) -> tuple[str, str | None, str | None]:
    """
    What makes two authorizers' keys the same: where they come from, and whom it trusts.
    """
    return (authorizer.issuer, authorizer.jwks_uri, authorizer.ca_file)
