"""
CORS for a route, answered by the gateway as API Gateway does: the chain's
C{"cors"} step.

A preflight (C{OPTIONS} with C{Origin} and C{Access-Control-Request-Method})
is answered here, before limits and authorization, and nothing is invoked:
204 with the C{Access-Control-Allow-*} headers for an allowed origin,
method and headers, else 403 without them.  Every other answer to an
allowed origin, the gateway's own errors included, carries
C{Access-Control-Allow-Origin}, C{Vary: Origin} and the expose and
credentials headers; whatever CORS headers the function set are replaced by
the route's, so a function can never grant more than the route does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from twisted_lambdagw.core.errors import Forbidden
from twisted_lambdagw.core.messages import Reply

from ..chain import Passage, Stage, SyncStep
from .config import TOKEN, CorsConfig

CORS_RESPONSE_HEADERS = frozenset({
    "access-control-allow-origin", "access-control-allow-credentials",
    "access-control-expose-headers", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-max-age",
})  # fmt: skip
"""The headers a function's reply loses on a CORS route (the route's replace them)."""


class CorsStep(SyncStep):
    """
    The chain's C{"cors"} step for one route.  It never waits: the chain
    calls L{check} directly.
    """

    __slots__ = ("_extra", "_max_age", "config")

    stage: ClassVar[Stage] = "cors"

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        credentials = [("Access-Control-Allow-Credentials", "true")] if config.credentials else []
        expose = (
            [("Access-Control-Expose-Headers", ", ".join(config.expose_headers))]
            if config.expose_headers
            else []
        )
        self._extra = (*expose, *credentials)
        self._max_age = (
            (("Access-Control-Max-Age", str(config.max_age)),) if config.max_age is not None else ()
        )

    def _allow_origin(self, origin: str) -> str:
        # "*" only when any origin may read it without credentials: it then
        # says the same to every cache; otherwise the origin itself.
        return "*" if self.config.any_origin and not self.config.credentials else origin

    def check(self, passage: Passage) -> Reply | None:
        headers = passage.request.requestHeaders
        # A function never grants CORS on a CORS route: the route does.
        passage.replaced.update(CORS_RESPONSE_HEADERS)
        origins = headers.getRawHeaders(b"origin")
        if not origins:
            return None
        passage.answer_headers.append(("Vary", "Origin"))
        origin = origins[-1].decode("latin-1") if len(origins) == 1 else ""
        allowed = bool(origin) and self.config.allows_origin(origin)
        requested = headers.getRawHeaders(b"access-control-request-method")
        if passage.request.method == b"OPTIONS" and requested:
            return self._preflight(passage, origin, allowed, requested[-1].decode("latin-1"))
        if allowed:
            passage.answer_headers.append(
                ("Access-Control-Allow-Origin", self._allow_origin(origin))
            )
            passage.answer_headers.extend(self._extra)
        return None

    def _preflight(self, passage: Passage, origin: str, allowed: bool, method: str) -> Reply:
        if not allowed:
            raise Forbidden("CORS origin not allowed", detail=f"preflight from {origin!r}")
        if not TOKEN.fullmatch(method) or (
            self.config.methods is not None and method.upper() not in self.config.methods
        ):
            raise Forbidden("CORS method not allowed", detail=f"preflight for {method!r}")
        asked = _header_list(
            passage.request.requestHeaders.getRawHeaders(b"access-control-request-headers", [])
        )
        if asked is None or (
            self.config.headers is not None
            and any(name not in self.config.headers for name in asked)
        ):
            raise Forbidden("CORS headers not allowed", detail=f"preflight for headers {asked!r}")
        # "*" is no wildcard for a request with credentials: name what was asked.
        methods = method if self.config.methods is None else ", ".join(self.config.methods)
        allow_headers = ", ".join(asked if self.config.headers is None else self.config.headers)
        reply_headers = [
            ("Access-Control-Allow-Origin", self._allow_origin(origin)),
            ("Access-Control-Allow-Methods", methods),
            *((("Access-Control-Allow-Headers", allow_headers),) if allow_headers else ()),
            *self._max_age,
            *((("Access-Control-Allow-Credentials", "true"),) if self.config.credentials else ()),
            ("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]
        # As answer headers: the resource drops the C{replaced} CORS names
        # from a reply's own headers, then adds these.
        passage.answer_headers.extend(reply_headers)
        return Reply(204, (), b"")

    def describe(self) -> str:
        c = self.config
        origins = ["*"] if c.any_origin else sorted(c.origins)
        origins += [f"{p.scheme}://*{p.suffix}" for p in c.patterns]
        parts = [
            f"origins {' '.join(origins)}",
            f"methods {' '.join(c.methods) if c.methods else '*'}",
            f"headers {' '.join(c.headers) if c.headers else '*'}",
        ]
        if c.expose_headers:
            parts.append(f"expose {' '.join(c.expose_headers)}")
        if c.max_age is not None:
            parts.append(f"max-age {c.max_age}s")
        if c.credentials:
            parts.append("credentials")
        return "cors " + ", ".join(parts)


def _header_list(values: Iterable[bytes]) -> list[str] | None:
    """
    The lower-case names of C{Access-Control-Request-Headers}, or None if malformed.
    """
    names: list[str] = []
    for value in values:
        for item in value.decode("latin-1").split(","):
            name = item.strip().lower()
            if not name:
                continue
            if not TOKEN.fullmatch(name):
                return None
            names.append(name)
    return names
