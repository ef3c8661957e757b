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

Wildcard origins: C{https://*.example.com} matches any subdomain of
C{example.com} at any depth (C{https://a.example.com},
C{https://a.b.example.com}), with the same scheme and port, and never
C{https://example.com} itself nor C{https://badexample.com}.  That is how
Spring's origin patterns and most gateways read such a pattern: whoever
controls a zone controls every name under it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from ..core.errors import Forbidden
from ..core.messages import Reply
from ._keys import ConfigKeys
from ._passage import PassageView

# A token (RFC 9110), for methods and header names.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(
    rf"(?P<scheme>https?)://(?P<wild>\*\.)?(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}

CORS_RESPONSE_HEADERS = frozenset({
    "access-control-allow-origin", "access-control-allow-credentials",
    "access-control-expose-headers", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-max-age",
})  # fmt: skip
"""The headers a function's reply loses on a CORS route (the route's replace them)."""


@dataclass(frozen=True, slots=True)
class OriginPattern:
    """
    C{scheme://*.suffix[:port]}: any subdomain of C{suffix}, at any depth.
    """

    scheme: str
    suffix: str
    """The parent domain with a leading dot, e.g. C{.example.com}."""
    port: int


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """
    A route's C{cors_*} keys.  C{None} methods or headers mean C{*}.
    """

    any_origin: bool = False
    origins: frozenset[str] = frozenset()
    """Exact origins, serialized as browsers send them (lower-case, no default port)."""
    patterns: tuple[OriginPattern, ...] = ()
    methods: tuple[str, ...] | None = None
    headers: tuple[str, ...] | None = None
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    credentials: bool = False

    def allows_origin(self, origin: str) -> bool:
        if self.any_origin or origin in self.origins:
            return True
        if not self.patterns:
            return False
        match = _ORIGIN.fullmatch(origin)
        if match is None or match["wild"]:
            return False
        scheme, host = match["scheme"], match["host"]
        port = int(match["port"]) if match["port"] else _DEFAULT_PORTS[scheme]
        return any(
            p.scheme == scheme and p.port == port and host.endswith(p.suffix) for p in self.patterns
        )


CORS_KEYS = frozenset({
    "cors_allow_origins", "cors_allow_methods", "cors_allow_headers",
    "cors_expose_headers", "cors_max_age", "cors_allow_credentials",
})  # fmt: skip


def parse_cors(s: ConfigKeys) -> CorsConfig | None:
    """
    The route's CORS config, or None when it has no C{cors_*} key.

    @raise Exception: the section's config error, one line naming the key.
    """
    if not any(s.text(key) for key in CORS_KEYS):
        return None
    words = s.words("cors_allow_origins")
    if not words:
        raise s.error("cors_allow_origins", "required with any other cors_* key")
    credentials = s.boolean("cors_allow_credentials", False)
    any_origin = False
    origins: set[str] = set()
    patterns: list[OriginPattern] = []
    for word in words:
        if word == "*":
            if len(words) > 1:
                raise s.error("cors_allow_origins", "'*' stands alone")
            if credentials:
                raise s.error(
                    "cors_allow_origins",
                    "'*' cannot go with cors_allow_credentials = yes (browsers refuse it):"
                    " list the origins",
                )
            any_origin = True
            continue
        match = _ORIGIN.fullmatch(word)
        if match is None or word != word.lower():
            raise s.error(
                "cors_allow_origins",
                f"not an origin like https://app.example.com or https://*.example.com: {word!r}",
            )
        scheme, port = match["scheme"], match["port"]
        port_number = int(port) if port else _DEFAULT_PORTS[scheme]
        if not 0 < port_number < 65536:
            raise s.error("cors_allow_origins", f"not a port: {word!r}")
        if match["wild"]:
            if "." not in match["host"] and not match["host"].startswith("["):
                raise s.error("cors_allow_origins", f"a wildcard needs a parent domain: {word!r}")
            patterns.append(OriginPattern(scheme, "." + match["host"], port_number))
        else:
            # As a browser serializes it: no default port.
            default = port_number == _DEFAULT_PORTS[scheme]
            origins.add(f"{scheme}://{match['host']}" + ("" if default else f":{port_number}"))
    max_age = s.text("cors_max_age")
    return CorsConfig(
        any_origin=any_origin,
        origins=frozenset(origins),
        patterns=tuple(patterns),
        methods=_names(s, "cors_allow_methods", upper=True),
        headers=_names(s, "cors_allow_headers", upper=False),
        expose_headers=_names(s, "cors_expose_headers", upper=False, star=False) or (),
        max_age=None if max_age is None else int(s.duration("cors_max_age", 0)),
        credentials=credentials,
    )


def _names(s: ConfigKeys, key: str, *, upper: bool, star: bool = True) -> tuple[str, ...] | None:
    words = s.words(key)
    if not words or (star and words == ["*"]):
        return None
    names: list[str] = []
    for word in words:
        if not _TOKEN.fullmatch(word) or word == "*":
            raise s.error(key, f"not a {'method' if upper else 'header name'}: {word!r}")
        name = word.upper() if upper else word.lower()
        if name not in names:
            names.append(name)
    return tuple(names)


class CorsStep:
    """
    The chain's C{"cors"} step for one route.
    """

    stage: ClassVar[str] = "cors"

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

    async def __call__(self, passage: PassageView) -> Reply | None:
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

    def _preflight(self, passage: PassageView, origin: str, allowed: bool, method: str) -> Reply:
        if not allowed:
            raise Forbidden("CORS origin not allowed", detail=f"preflight from {origin!r}")
        if not _TOKEN.fullmatch(method) or (
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
        return Reply(204, tuple(reply_headers), b"")

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
            if not _TOKEN.fullmatch(name):
                return None
            names.append(name)
    return names
