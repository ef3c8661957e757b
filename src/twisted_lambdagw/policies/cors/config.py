"""
A route's C{cors_*} keys, parsed (the step is L{twisted_lambdagw.policies.cors.step}).

Wildcard origins: C{https://*.example.com} matches any subdomain of
C{example.com} at any depth (C{https://a.example.com},
C{https://a.b.example.com}), with the same scheme and port, and never
C{https://example.com} itself nor C{https://badexample.com}.  That is how
Spring's origin patterns and most gateways read such a pattern: whoever
controls a zone controls every name under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._keys import ConfigKeys

TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A token (RFC 9110): a method or a header name."""
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(
    rf"(?P<scheme>https?)://(?P<wild>\*\.)?(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        if not TOKEN.fullmatch(word) or word == "*":
            raise s.error(key, f"not a {'method' if upper else 'header name'}: {word!r}")
        name = word.upper() if upper else word.lower()
        if name not in names:
            names.append(name)
    return tuple(names)
