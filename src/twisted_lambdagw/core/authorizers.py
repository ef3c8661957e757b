"""
The C{[authorizer:NAME]} sections: JWT and Lambda authorizers, read and checked.

L{twisted_lambdagw.core.config} hands each such section to L{read_jwt} or
L{read_lambda} (and resolves a Lambda authorizer's region and role as for a
route); routes then name one in C{auth}.  As everywhere in the config, a
problem is one line naming the file, the section and the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509

from .patterns import HEADER_NAME
from .values import (
    DURATION,
    DURATION_UNITS,
    FUNCTION_ARN,
    FUNCTION_NAME,
    QUALIFIER,
    Section,
    invocation_keys,
)

SECTION_PREFIX = "authorizer:"
AUTHORIZER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RESERVED_NAMES = frozenset({"none", "basic"})
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                      "ES512", "EdDSA")  # fmt: skip
"""Asymmetric algorithms only: a gateway holds no shared secret, so HS* and none never verify."""
DEFAULT_ALGORITHMS = ("RS256", "ES256")
MAX_RESULT_TTL = 3600.0
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
"""An OAuth scope token (RFC 6749 §3.3)."""
QUERY_NAME = re.compile(r"[A-Za-z0-9._~-]+")

JWT_KEYS = {"type", "issuer", "audience", "jwks_uri", "identity_source", "algorithms",
             "clock_skew", "ca_file"}  # fmt: skip
LAMBDA_KEYS = {
    "type", "function", "backend", "payload_format", "simple_responses", "identity_source",
    "result_ttl", "timeout", "qualifier", "aws_access", "aws_secret", "aws_region",
    "role_arn", "external_id", "role_session_name",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class IdentitySource:
    """
    Where a credential is read from: C{$request.header.NAME} or C{$request.querystring.NAME}.
    """

    kind: Literal["header", "querystring"]
    name: str
    """The header name in lower case, or the query parameter's name as written."""
    text: str
    """As the config wrote it, for API Gateway's C{identitySource} list."""


@dataclass(frozen=True, slots=True)
class JWTAuthorizerConfig:
    """
    A C{type = jwt} section: whose tokens are trusted, for which audiences, and how.
    """

    name: str
    issuer: str
    audience: tuple[str, ...]
    identity_source: IdentitySource
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jwks_uri: str | None = None
    """None: found by OpenID discovery from the issuer."""
    clock_skew: float = 0.0
    ca_file: str | None = None
    """PEM certificates of the CAs trusted for the keys' https fetches; None: the system's."""
    type: Literal["jwt"] = "jwt"


@dataclass(frozen=True, slots=True)
class LambdaAuthorizerConfig:
    """
    A C{type = lambda} section: the function asked, how it is invoked, how long answers hold.
    """

    name: str
    function: str
    identity_sources: tuple[IdentitySource, ...]
    backend: str = "aws"
    qualifier: str | None = None
    aws_access: str | None = None
    aws_secret: str | None = field(default=None, repr=False)
    aws_region: str | None = None
    region: str | None = None
    """Resolved as for a route (None for local functions)."""
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    role_session_name: str = "lambdagw"
    payload_format: Literal["1.0", "2.0"] = "2.0"
    simple_responses: bool = True
    result_ttl: float = 0.0
    timeout: float = 10.0
    type: Literal["lambda"] = "lambda"


AuthorizerConfig = JWTAuthorizerConfig | LambdaAuthorizerConfig


def check_route_auth(
    s: Section, auth: str, authorizers: tuple[AuthorizerConfig, ...]
) -> tuple[str, ...]:
    """
    Check a route's C{auth} names an authorizer and return its C{scopes}.
    """
    scopes = tuple(s.words("scopes"))
    by_name = {a.name: a for a in authorizers}
    if auth not in ("none", "basic") and auth not in by_name:
        known = ", ".join(["none", "basic", *by_name])
        raise s.error(
            "auth", f"must be one of {known} (or an [authorizer:NAME] section), not {auth!r}"
        )
    authorizer = by_name.get(auth)
    if scopes and not isinstance(authorizer, JWTAuthorizerConfig):
        raise s.error("scopes", "needs auth naming a jwt authorizer")
    for scope in scopes:
        if not SCOPE.fullmatch(scope):
            raise s.error("scopes", f"not an OAuth scope: {scope!r}")
    return scopes


def _identity_source(s: Section, text: str) -> IdentitySource:
    for prefix, kind, pattern in (
        ("$request.header.", "header", HEADER_NAME),
        ("$request.querystring.", "querystring", QUERY_NAME),
    ):
        if text.startswith(prefix) and pattern.fullmatch(text[len(prefix) :]):
            name = text[len(prefix) :]
            if kind == "header":
                return IdentitySource("header", name.lower(), text)
            return IdentitySource("querystring", name, text)
    raise s.error(
        "identity_source",
        f"not $request.header.NAME or $request.querystring.NAME: {text!r}",
    )


def is_loopback(host: str) -> bool:
    """
    Whether C{host} (as in a URL, IPv6 unbracketed) is a loopback address.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fetch_url(s: Section, key: str, url: str) -> str:
    """
    A URL the gateway fetches keys from: https, or http to a loopback address.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise s.error(key, f"not an https URL: {url!r}")
    if any(c.isspace() for c in url) or parts.username or parts.password:
        raise s.error(key, f"not an https URL (no spaces or user info): {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise s.error(key, f"plain http only for loopback addresses; use https: {url!r}")
    return url


def _ca_file(s: Section, path: str) -> str:
    """
    C{path}, once it is known to hold at least one PEM certificate.
    """
    try:
        with open(path, "rb") as f:
            certificates = x509.load_pem_x509_certificates(f.read())
    except OSError as e:
        raise s.error("ca_file", f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        certificates = []
    if not certificates:
        raise s.error("ca_file", f"no PEM certificate in {path}")
    return path


def read_jwt(
    s: Section, name: str, file_path: Callable[[str], str] = lambda path: path
) -> JWTAuthorizerConfig:
    """
    A C{type = jwt} section; C{file_path} resolves C{ca_file} as the config's other files.
    """
    issuer = s.text("issuer")
    if issuer is None:
        raise s.error("issuer", "required: the issuer the tokens' iss must equal")
    jwks_uri = s.text("jwks_uri")
    if jwks_uri is not None:
        _fetch_url(s, "jwks_uri", jwks_uri)
    else:
        _fetch_url(s, "issuer", issuer)
    audience = tuple(s.words("audience"))
    if not audience:
        raise s.error("audience", "required: the audiences (client ids) a token may be for")
    algorithms = tuple(s.words("algorithms")) or DEFAULT_ALGORITHMS
    for algorithm in algorithms:
        if algorithm not in ALLOWED_ALGORITHMS:
            raise s.error(
                "algorithms",
                f"{algorithm!r} is not allowed (none and HS* never are);"
                f" use {', '.join(ALLOWED_ALGORITHMS)}",
            )
    sources = s.words("identity_source") or ["$request.header.Authorization"]
    if len(sources) != 1:
        raise s.error("identity_source", "a jwt authorizer reads one identity source")
    ca_file = s.text("ca_file")
    if ca_file is not None:
        ca_file = _ca_file(s, file_path(ca_file))
    return JWTAuthorizerConfig(
        name=name,
        issuer=issuer,
        audience=audience,
        identity_source=_identity_source(s, sources[0]),
        algorithms=algorithms,
        jwks_uri=jwks_uri,
        clock_skew=_seconds(s, "clock_skew", 0.0, maximum=300.0),
        ca_file=ca_file,
    )


def read_lambda(s: Section, name: str, has_local: bool) -> LambdaAuthorizerConfig:
    """
    A C{type = lambda} section; the caller resolves its region and role.
    """
    function = s.text("function")
    if function is None:
        raise s.error("function", "required: the authorizer function's name or ARN")
    arn = FUNCTION_ARN.fullmatch(function)
    if arn is None and not FUNCTION_NAME.fullmatch(function):
        raise s.error("function", f"not a function name or function ARN: {function!r}")
    qualifier = s.text("qualifier")
    if qualifier is not None and not QUALIFIER.fullmatch(qualifier):
        raise s.error("qualifier", f"not a version or alias: {qualifier!r}")
    if arn is not None and arn["qualifier"] and qualifier is not None:
        raise s.error("qualifier", "the ARN in 'function' already names a qualifier")
    backend, aws_access, aws_secret, aws_region = invocation_keys(s, has_local)
    payload_format = s.choice("payload_format", ("2.0", "1.0"), "2.0")
    simple = s.boolean("simple_responses", payload_format == "2.0")
    if simple and payload_format == "1.0":
        raise s.error("simple_responses", "payload_format 1.0 answers with an IAM policy only")
    sources = s.words("identity_source") or ["$request.header.Authorization"]
    timeout = _seconds(s, "timeout", 10.0, maximum=900.0)
    if timeout <= 0:
        raise s.error("timeout", "must be more than 0")
    return LambdaAuthorizerConfig(
        name=name,
        function=function,
        identity_sources=tuple(_identity_source(s, text) for text in sources),
        backend=backend,
        qualifier=qualifier,
        aws_access=aws_access,
        aws_secret=aws_secret,
        aws_region=aws_region,
        region=arn["region"] if arn is not None else None,
        payload_format="1.0" if payload_format == "1.0" else "2.0",
        simple_responses=simple,
        result_ttl=_seconds(s, "result_ttl", 0.0, maximum=MAX_RESULT_TTL),
        timeout=timeout,
    )


def _seconds(s: Section, key: str, default: float, maximum: float) -> float:
    """
    A duration that may be 0, at most C{maximum} seconds.
    """
    value = s.text(key)
    if value is None:
        return default
    match = DURATION.fullmatch(value)
    if match is None:
        raise s.error(key, f"not a duration: {value!r} (use e.g. 0, 30s, 5m)")
    unit = match["unit"].lower() if match["unit"] else None
    seconds = float(match["number"]) * DURATION_UNITS[unit]
    if seconds > maximum:
        raise s.error(key, f"at most {maximum:g} seconds: {value!r}")
    return seconds


def describe(authorizer: AuthorizerConfig, scopes: tuple[str, ...] = ()) -> str:
    """
    One line for C{lambdagw check}: what the authorizer checks, and how.
    """
    if isinstance(authorizer, JWTAuthorizerConfig):
        keys = authorizer.jwks_uri or "discovery"
        text = (
            f"auth jwt {authorizer.name} (issuer {authorizer.issuer},"
            f" audience {' '.join(authorizer.audience)}, keys from {keys},"
            f" algorithms {' '.join(authorizer.algorithms)}"
        )
        if authorizer.ca_file is not None:
            text += f", CAs from {authorizer.ca_file}"
        return text + (f", scopes {' '.join(scopes)})" if scopes else ")")
    ttl = f"cached {authorizer.result_ttl:g}s" if authorizer.result_ttl else "not cached"
    kind = "simple" if authorizer.simple_responses else "IAM policy"
    return (
        f"auth lambda {authorizer.name} ({authorizer.function}, {authorizer.backend},"
        f" payload {authorizer.payload_format}, {kind} responses, {ttl},"
        f" timeout {authorizer.timeout:g}s)"
    )
