"""
The INI configuration file, read into frozen and validated objects.

Nothing else in the gateway touches configparser.  Every problem becomes a
L{ConfigError} whose text is one line naming the file, the section and the
key, because that line is all an operator sees when startup refuses to go on.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .authorizers import (
    AUTHORIZER_NAME,
    JWT_KEYS,
    LAMBDA_KEYS,
    RESERVED_NAMES,
    SECTION_PREFIX,
    AuthorizerConfig,
    LambdaAuthorizerConfig,
    check_route_auth,
    read_jwt,
    read_lambda,
)
from .endpoint_strings import resolve_files
from .node_runtime import BUNDLED, PACKAGE, find_client, find_node, how_to_install, node_functions
from .patterns import HeaderTemplate, parse_glob, parse_header_template

if TYPE_CHECKING:
    from ..policies.cors.config import CorsConfig
    from ..policies.limits.config import RouteLimits, StoreConfig
# Re-exported: these names were always config's.
from .values import BACKENDS as BACKENDS
from .values import DURATION as DURATION
from .values import DURATION_UNITS as _DURATION_UNITS
from .values import FUNCTION_ARN as FUNCTION_ARN
from .values import FUNCTION_NAME as FUNCTION_NAME
from .values import QUALIFIER as QUALIFIER
from .values import REGION as REGION

TLS_VERSIONS = ("1.2", "1.3")
FORMAT_NAMES = ("httpjson", "apigw-v1", "apigw-v2", "alb", "alb-multi")
AUTH_MODES = ("basic", "none")
INVOCATION_TYPES = ("RequestResponse", "Event")
LOG_TYPES = ("None", "Tail")
PRELUDE_MODES = ("auto", "always", "never")

NAME_AFFIX = re.compile(r"[A-Za-z0-9_-]{0,63}")
ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
ROLE_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
SIZE = re.compile(r"(?P<number>\d+)\s*(?P<unit>b|kb|mb|gb|kib|mib|gib)?", re.IGNORECASE)
TRUE = frozenset({"1", "yes", "true", "on"})
FALSE = frozenset({"0", "no", "false", "off"})

_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2,
    "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip


# A host name, an IPv4 address or a bracketed IPv6 one, an optional port, no
# user info and no path: the URL is sent as written, and signed as written.
_ENDPOINT_URL = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?/?"
)


class ConfigError(Exception):
    """
    The configuration cannot be used.  Its text is one line for the operator.
    """


TrustedProxy = ipaddress.IPv4Network | ipaddress.IPv6Network | str
"""An address or network, or the word ``unix`` for Unix socket peers."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    max_body_size: int = 6 * 1024 * 1024
    timeout: float = 30.0
    access_log: str | None = None
    health_path: str | None = "/healthz"
    metrics_path: str | None = "/metrics"
    max_in_flight: int = 10000
    drain_timeout: float = 30.0
    workers: int = 1
    header_timeout: float = 10.0
    """Seconds a client has to send a request's headers, from its first byte."""
    idle_timeout: float = 60.0
    """Seconds an open connection may stay silent between requests."""
    trusted_proxies: tuple[TrustedProxy, ...] = ()
    """Peers whose X-Forwarded-For/-Proto/-Port are believed; ``unix`` is a Unix socket."""
    tls_min_version: str = "1.2"
    limits_store: StoreConfig | None = None
    """Where rate limits and quotas count (C{policies.limits.config}); None: memory."""


@dataclass(frozen=True, slots=True)
class AWSConfig:
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    role_session_name: str = "lambdagw"
    use_fips_endpoint: bool = False
    use_dualstack_endpoint: bool = False
    max_connections: int = 1000
    connect_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    realm: str
    users_file: str


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """
    The ``[local]`` section: where local functions live and how they run.

    ``env`` holds the extra environment entries every worker gets, in file
    order; ``python`` is the interpreter that runs ``awslambdaric`` for
    ``NAME.py`` functions.  ``node`` and ``node_client`` (the entry point of
    ``aws-lambda-ric``) run ``NAME.mjs`` and ``NAME.js`` functions; either is
    None when it is not installed (see L{twisted_lambdagw.core.node_runtime}).
    """

    functions_dir: str
    concurrency: int = 4
    queue_size: int = 100
    idle_timeout: float = 300.0
    memory_size: int = 128
    region: str = "us-east-1"
    env: tuple[tuple[str, str], ...] = ()
    python: str = field(default_factory=lambda: sys.executable)
    node: str | None = field(default_factory=find_node)
    node_client: str | None = field(default_factory=lambda: find_client(str(BUNDLED)))


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """
    One ``[route:PREFIX]`` section.

    ``prefix`` always ends in ``/``: ``/lambda`` and ``/lambda/`` are one
    prefix.  ``region`` is the region the route's calls go to, already
    resolved from the route, ``[aws]``, the environment or the profile (or
    the ARN in ``single``); it is None only for local routes.  ``role_arn``
    and the endpoint switches are resolved the same way: the route's own
    value, else ``[aws]``'s.
    """

    prefix: str
    backend: str = "aws"
    format: str = "httpjson"
    auth: str = "none"
    timeout: float = 30.0
    stream: bool = False
    stream_idle_timeout: float = 30.0
    """Streamed routes: the longest gap allowed between chunks once sending began."""
    stream_prelude: str = "auto"
    """Streamed routes: whether the stream starts with an HTTP prelude (auto/always/never)."""
    invocation_type: str = "RequestResponse"
    aws_access: str | None = None
    aws_secret: str | None = field(default=None, repr=False)
    aws_region: str | None = None
    region: str | None = None
    qualifier: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name_prepend: str = ""
    name_append: str = ""
    single: str | None = None
    strip_path_prefix: bool = False
    header_upstream: tuple[HeaderTemplate, ...] = ()
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    role_session_name: str = "lambdagw"
    use_fips_endpoint: bool = False
    use_dualstack_endpoint: bool = False
    retry_idempotent: bool = False
    log_type: str = "None"
    cors: CorsConfig | None = None
    """The C{cors_*} keys (C{policies.cors.config}); None: the route does no CORS."""
    limits: RouteLimits | None = None
    """The C{rate_*} and C{quota} keys (C{policies.limits.config})."""
    scopes: tuple[str, ...] = ()
    """With ``auth`` naming a jwt authorizer: the token must hold one of these."""


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    gateway: GatewayConfig
    aws: AWSConfig
    routes: tuple[RouteConfig, ...]
    auth: AuthConfig | None = None
    local: LocalConfig | None = None
    authorizers: tuple[AuthorizerConfig, ...] = ()
    """The ``[authorizer:NAME]`` sections, in file order."""


ProfileRegion = Callable[[str | None, Mapping[str, str]], str | None]


def botocore_profile_region(profile: str | None, environ: Mapping[str, str]) -> str | None:
    """
    The region the botocore profile names, if any.

    ``profile`` is already chosen by the caller (None means the default
    profile).  botocore would otherwise look up the profile and the shared
    files in ``os.environ``; they are pinned here so that ``environ`` alone
    decides, as it does for the region variables the caller reads first.
    """
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session()
    # Overrides in the config store win over every provider, even when the
    # value is None (Session.set_config_variable(None) falls back to them).
    store = session.get_component("config_store")
    store.set_config_variable("profile", profile)
    store.set_config_variable("config_file", environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    store.set_config_variable(
        "credentials_file", environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
    )
    try:
        region = session.get_scoped_config().get("region")
    except botocore.exceptions.ProfileNotFound:
        raise ValueError(f"no such AWS profile {profile!r}") from None
    except botocore.exceptions.ConfigParseError as e:
        raise ValueError(f"cannot read the AWS config files: {e}") from None
    return str(region) if region else None


def load_config(
    path: str,
    environ: Mapping[str, str] | None = None,
    profile_region: ProfileRegion = botocore_profile_region,
) -> Config:
    """
    Read and validate the configuration file at ``path``.

    Relative file names in the config (the functions directory, the users
    file, a file access log, the key and certificate files of ``ssl:``
    listeners, a Unix socket's address) are taken relative to the directory
    holding the config file, as nginx and Caddy do: the file means the same
    whichever directory the gateway is started from.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    return parse_config(
        text,
        path,
        os.environ if environ is None else environ,
        profile_region,
        base_dir=os.path.dirname(os.path.abspath(path)),
    )


def parse_config(
    text: str,
    path: str = "<config>",
    environ: Mapping[str, str] | None = None,
    profile_region: ProfileRegion = botocore_profile_region,
    *,
    base_dir: str | None = None,
) -> Config:
    """
    Validate configuration text; ``path`` is only used in error messages.

    Relative file names are joined to ``base_dir``; without one (text that
    came from no file) they are left as written, relative to the current
    directory.
    """
    parser = configparser.ConfigParser(
        interpolation=None,
        inline_comment_prefixes=(";", "#"),
        comment_prefixes=(";", "#"),
        empty_lines_in_values=False,
        default_section="\x00no default section",
    )
    try:
        parser.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError(f"{path}: {_one_line(e.message)}") from None
    environ = os.environ if environ is None else environ
    return _Reader(parser, path, environ, profile_region, base_dir).read()


def resolve_path(value: str, base_dir: str | None) -> str:
    """
    ``value`` joined to ``base_dir`` when it is relative and there is a base.
    """
    if base_dir is None or os.path.isabs(value):
        return value
    # Joined, not normalised: ``..`` after a symbolic link is the kernel's
    # to resolve, as it would be for the operator's shell.
    return os.path.join(base_dir, value)


class _PolicyParsers:
    """
    The policy steps' own config parsers, imported when a config is read.

    They live beside their steps and import this module's types; importing
    them here at the top would make the two modules import each other.
    """

    def __init__(self) -> None:
        from ..policies.cors.config import parse_cors
        from ..policies.limits.config import parse_route_limits, parse_store

        self.parse_cors = parse_cors
        self.parse_route_limits = parse_route_limits
        self.parse_store = parse_store


def _policy_parsers() -> _PolicyParsers:
    return _PolicyParsers()


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Section:
    """
    Typed access to one section, remembering which keys were used.
    """

    def __init__(self, path: str, name: str, values: Mapping[str, str], allowed: set[str]):
        self.path = path
        self.name = name
        self._values = {k: v.strip() for k, v in values.items()}
        for key in self._values:
            if key not in allowed:
                raise self.error(key, "unknown key")

    def error(self, key: str | None, message: str) -> ConfigError:
        where = f"[{self.name}] {key}" if key else f"[{self.name}]"
        return ConfigError(f"{self.path}: {where}: {message}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._values.get(key)
        return value if value else default

    def lines(self, key: str) -> list[str]:
        value = self._values.get(key, "")
        return [line.strip() for line in value.splitlines() if line.strip()]

    def words(self, key: str) -> list[str]:
        return self._values.get(key, "").split()

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        assert value is not None
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise self.error(key, f"not a boolean: {value!r} (use yes/no, true/false, on/off, 1/0)")

    def size(self, key: str, default: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        match = SIZE.fullmatch(value)
        if match is None:
            raise self.error(key, f"not a size: {value!r} (use e.g. 6MB, 512KB, 1024)")
        unit = match["unit"].lower() if match["unit"] else None
        return int(match["number"]) * _SIZE_UNITS[unit]

    def duration(self, key: str, default: float) -> float:
        value = self.text(key)
        if value is None:
            return default
        match = DURATION.fullmatch(value)
        seconds = 0.0
        if match is not None:
            unit = match["unit"].lower() if match["unit"] else None
            seconds = float(match["number"]) * _DURATION_UNITS[unit]
        if seconds <= 0:
            raise self.error(key, f"not a positive duration: {value!r} (use e.g. 30, 30s, 2m)")
        return seconds

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        value = self.text(key)
        if value is None:
            return default
        if not value.isdigit() or int(value) < minimum:
            raise self.error(key, f"not an integer of at least {minimum}: {value!r}")
        return int(value)

    def url_path(self, key: str, default: str | None) -> str | None:
        value = self.text(key, default)
        if value is None or value.lower() in FALSE:
            return None
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise self.error(key, f"must be a path starting with '/': {value!r}")
        return value


_GATEWAY_KEYS = {
    "listen", "max_body_size", "timeout", "access_log", "health_path", "metrics_path",
    "max_in_flight", "drain_timeout", "workers", "header_timeout", "idle_timeout",
    "trusted_proxies", "tls_min_version", "limits_store", "limits_store_down",
}  # fmt: skip
_ROLE_KEYS = {"role_arn", "external_id", "role_session_name"}
_ENDPOINT_SWITCHES = ("use_fips_endpoint", "use_dualstack_endpoint")
_AWS_KEYS = {
    "region", "profile", "access_key_id", "secret_access_key", "session_token", "endpoint_url",
    "max_connections", "connect_timeout", *_ROLE_KEYS, *_ENDPOINT_SWITCHES,
}  # fmt: skip
_AUTH_KEYS = {"realm", "users_file"}
_LOCAL_KEYS = {
    "functions_dir", "concurrency", "queue_size", "idle_timeout", "memory_size", "region",
    "env", "python", "node", "node_runtime",
}  # fmt: skip
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LOCAL_RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})  # fmt: skip
_ROUTE_KEYS = {
    "backend", "format", "auth", "timeout", "stream", "stream_idle_timeout", "stream_prelude",
    "invocation_type", "aws_access",
    "aws_secret", "aws_region", "qualifier", "include", "exclude", "name_prepend",
    "name_append", "single", "strip_path_prefix", "header_upstream",
    "retry_idempotent", "log_type", "scopes", *_ROLE_KEYS, *_ENDPOINT_SWITCHES,
    # policies.cors and policies.limits parse these.
    "cors_allow_origins", "cors_allow_methods", "cors_allow_headers", "cors_expose_headers",
    "cors_max_age", "cors_allow_credentials", "rate_limit", "rate_burst", "rate_key", "quota",
}  # fmt: skip


class _Reader:
    def __init__(
        self,
        parser: configparser.ConfigParser,
        path: str,
        environ: Mapping[str, str],
        profile_region: ProfileRegion,
        base_dir: str | None = None,
    ) -> None:
        self.parser = parser
        self.path = path
        self.environ = environ
        self.profile_region = profile_region
        self.authorizers: tuple[AuthorizerConfig, ...] = ()
        self.base_dir = base_dir

    def file_path(self, value: str) -> str:
        """
        A file name from the config, relative ones taken from the config's directory.
        """
        return resolve_path(value, self.base_dir)

    def section(self, name: str, allowed: set[str]) -> _Section:
        values = dict(self.parser[name]) if self.parser.has_section(name) else {}
        return _Section(self.path, name, values, allowed)

    def read(self) -> Config:
        for name in self.parser.sections():
            if name not in ("gateway", "aws", "auth", "local") and not name.startswith(
                ("route:", "authorizer:")
            ):
                raise ConfigError(f"{self.path}: [{name}]: unknown section")
        gateway = self.read_gateway()
        aws = self.read_aws()
        auth = self.read_auth() if self.parser.has_section("auth") else None
        local = self.read_local() if self.parser.has_section("local") else None
        self.authorizers = self.read_authorizers(aws, local)
        routes = self.read_routes(gateway, aws, auth, local)
        if not routes:
            raise ConfigError(f"{self.path}: no [route:PREFIX] section: nothing to serve")
        return Config(self.path, gateway, aws, routes, auth, local, self.authorizers)

    def read_authorizers(
        self, aws: AWSConfig, local: LocalConfig | None
    ) -> tuple[AuthorizerConfig, ...]:
        """
        Every ``[authorizer:NAME]`` section, in file order.
        """
        found: list[AuthorizerConfig] = []
        for section in self.parser.sections():
            if not section.startswith(SECTION_PREFIX):
                continue
            name = section[len(SECTION_PREFIX) :].strip()
            where = f"{self.path}: [{section}]"
            if not AUTHORIZER_NAME.fullmatch(name):
                raise ConfigError(f"{where}: the name must be 1-64 letters, digits or . _ -")
            if name in RESERVED_NAMES:
                raise ConfigError(f"{where}: {name!r} is a reserved auth mode, not a name")
            kind = self.parser[section].get("type", "").strip()
            if kind == "jwt":
                found.append(read_jwt(self.section(section, JWT_KEYS), name, self.file_path))
            elif kind == "lambda":
                s = self.section(section, LAMBDA_KEYS)
                found.append(self.lambda_authorizer(s, name, aws, local is not None))
            else:
                raise ConfigError(f"{where} type: must be jwt or lambda, not {kind!r}")
        return tuple(found)

    def lambda_authorizer(
        self, s: _Section, name: str, aws: AWSConfig, has_local: bool
    ) -> LambdaAuthorizerConfig:
        """
        A Lambda authorizer, its region and role found as a route's are.
        """
        found = read_lambda(s, name, has_local)
        region = found.region
        if found.backend == "aws" and region is None:
            region = self.region(s, aws, found.aws_region)
        role_arn, external_id, session_name = self.role(s, aws.role_session_name)
        if role_arn is None:
            role_arn, external_id = aws.role_arn, aws.external_id
            session_name = aws.role_session_name
        return replace(
            found,
            region=region if found.backend == "aws" else None,
            role_arn=role_arn,
            external_id=external_id,
            role_session_name=session_name,
        )

    def read_gateway(self) -> GatewayConfig:
        s = self.section("gateway", _GATEWAY_KEYS)
        default = GatewayConfig()
        listen = tuple(self.listen(s)) or default.listen
        access_log = s.text("access_log")
        if access_log is not None and access_log != "-":
            access_log = self.file_path(access_log)
        return GatewayConfig(
            listen=listen,
            max_body_size=s.size("max_body_size", default.max_body_size),
            timeout=s.duration("timeout", default.timeout),
            access_log=access_log,
            health_path=s.url_path("health_path", default.health_path),
            metrics_path=s.url_path("metrics_path", default.metrics_path),
            max_in_flight=s.integer("max_in_flight", default.max_in_flight),
            drain_timeout=s.duration("drain_timeout", default.drain_timeout),
            workers=s.integer("workers", default.workers),
            header_timeout=s.duration("header_timeout", default.header_timeout),
            idle_timeout=s.duration("idle_timeout", default.idle_timeout),
            trusted_proxies=self.trusted_proxies(s),
            tls_min_version=s.choice("tls_min_version", TLS_VERSIONS, default.tls_min_version),
            limits_store=_policy_parsers().parse_store(s),
        )

    def listen(self, s: _Section) -> list[str]:
        descriptions = []
        for line in s.lines("listen"):
            try:
                descriptions.append(resolve_files(line, self.file_path))
            except ValueError as e:
                raise s.error("listen", f"bad endpoint {line!r}: {e}") from None
        return descriptions

    def trusted_proxies(self, s: _Section) -> tuple[TrustedProxy, ...]:
        proxies: list[TrustedProxy] = []
        for word in s.words("trusted_proxies"):
            if word == "unix":
                proxies.append(word)
                continue
            try:
                proxies.append(ipaddress.ip_network(word, strict=True))
            except ValueError as e:
                raise s.error("trusted_proxies", f"not an IP address or network: {e}") from None
        return tuple(proxies)

    def read_aws(self) -> AWSConfig:
        s = self.section("aws", _AWS_KEYS)
        region = s.text("region")
        if region is not None and not REGION.fullmatch(region):
            raise s.error("region", f"not an AWS region: {region!r}")
        access, secret = s.text("access_key_id"), s.text("secret_access_key")
        if (access is None) != (secret is None):
            key = "secret_access_key" if secret is None else "access_key_id"
            raise s.error(key, "access_key_id and secret_access_key go together")
        endpoint_url = s.text("endpoint_url")
        if endpoint_url is not None and not _ENDPOINT_URL.fullmatch(endpoint_url):
            raise s.error(
                "endpoint_url",
                f"not an http(s) URL with an ASCII host and no path: {endpoint_url!r}",
            )
        default = AWSConfig()
        role_arn, external_id, session_name = self.role(s, default.role_session_name)
        fips, dualstack = self.endpoint_switches(s, endpoint_url, False, False)
        return AWSConfig(
            region=region,
            profile=s.text("profile"),
            access_key_id=access,
            secret_access_key=secret,
            session_token=s.text("session_token"),
            endpoint_url=endpoint_url.rstrip("/") if endpoint_url else None,
            role_arn=role_arn,
            external_id=external_id,
            role_session_name=session_name,
            use_fips_endpoint=fips,
            use_dualstack_endpoint=dualstack,
            max_connections=s.integer("max_connections", default.max_connections),
            connect_timeout=s.duration("connect_timeout", default.connect_timeout),
        )

    def role(self, s: _Section, default_session_name: str) -> tuple[str | None, str | None, str]:
        """
        ``role_arn``, ``external_id`` and ``role_session_name`` of a section.
        """
        role_arn = s.text("role_arn")
        if role_arn is not None and not ROLE_ARN.fullmatch(role_arn):
            raise s.error("role_arn", f"not an IAM role ARN: {role_arn!r}")
        external_id = s.text("external_id")
        session_name = s.text("role_session_name")
        for key, value in (("external_id", external_id), ("role_session_name", session_name)):
            if value is not None and role_arn is None:
                raise s.error(key, "needs role_arn in the same section")
        if external_id is not None and not EXTERNAL_ID.fullmatch(external_id):
            raise s.error("external_id", "must be 2-1224 letters, digits or +=,.@:/-")
        if session_name is not None and not ROLE_SESSION_NAME.fullmatch(session_name):
            raise s.error(
                "role_session_name", f"must be 2-64 letters, digits or +=,.@-: {session_name!r}"
            )
        return role_arn, external_id, session_name or default_session_name

    def endpoint_switches(
        self, s: _Section, endpoint_url: str | None, fips: bool, dualstack: bool
    ) -> tuple[bool, bool]:
        """
        ``use_fips_endpoint`` and ``use_dualstack_endpoint``, inheriting the defaults.

        Whether the region has such an endpoint is checked against botocore's
        endpoint data when the gateway is assembled.
        """
        fips = s.boolean("use_fips_endpoint", fips)
        dualstack = s.boolean("use_dualstack_endpoint", dualstack)
        if endpoint_url is not None:
            for key in _ENDPOINT_SWITCHES:
                if s.boolean(key, False):
                    raise s.error(key, "has no effect with endpoint_url (the URL is fixed)")
        return fips, dualstack

    def read_auth(self) -> AuthConfig:
        s = self.section("auth", _AUTH_KEYS)
        users_file = s.text("users_file")
        if users_file is None:
            raise s.error("users_file", "required: the file of user:bcrypt-hash lines")
        users_file = self.file_path(users_file)
        realm = s.text("realm", "lambdagw")
        assert realm is not None
        if '"' in realm or "\\" in realm:
            raise s.error("realm", "may not contain quotes or backslashes")
        return AuthConfig(realm=realm, users_file=users_file)

    def read_local(self) -> LocalConfig:
        s = self.section("local", _LOCAL_KEYS)
        default = LocalConfig(functions_dir="")
        functions_dir = s.text("functions_dir")
        if functions_dir is None:
            raise s.error("functions_dir", "required: the directory holding the functions")
        functions_dir = self.file_path(functions_dir)
        if not os.path.isdir(functions_dir):
            raise s.error("functions_dir", f"not a directory: {functions_dir!r}")
        memory_size = s.integer("memory_size", default.memory_size, minimum=128)
        if memory_size > 10240:
            raise s.error("memory_size", f"at most 10240 (MB), as in Lambda: {memory_size}")
        region = s.text("region", default.region)
        assert region is not None
        if not REGION.fullmatch(region):
            raise s.error("region", f"not an AWS region: {region!r}")
        python = s.text("python")
        if python is None:
            python = default.python
        else:
            # A bare name is looked up on PATH; a path is the config's.
            found = shutil.which(self.file_path(python) if os.sep in python else python)
            if found is None:
                raise s.error("python", f"no such executable: {python!r}")
            python = os.path.abspath(found)
        node, node_client = self.node(s, functions_dir, default)
        return LocalConfig(
            functions_dir=functions_dir,
            concurrency=s.integer("concurrency", default.concurrency),
            queue_size=s.integer("queue_size", default.queue_size, minimum=0),
            idle_timeout=s.duration("idle_timeout", default.idle_timeout),
            memory_size=memory_size,
            region=region,
            env=self.local_env(s),
            python=python,
            node=node,
            node_client=node_client,
        )

    def node(
        self, s: _Section, functions_dir: str, default: LocalConfig
    ) -> tuple[str | None, str | None]:
        """
        ``node`` and the ``aws-lambda-ric`` entry point, each None if absent.

        Missing is an error only where it is needed: a ``node`` or
        ``node_runtime`` that was asked for, or Node.js functions in
        ``functions_dir`` that could not run.
        """
        client = default.node_client
        node_name = s.text("node")
        search = self.environ.get("PATH", os.defpath)
        if node_name is None:
            node = find_node("node", search)
        else:
            node = find_node(
                self.file_path(node_name) if os.sep in node_name else node_name, search
            )
            if node is None:
                raise s.error("node", f"no such executable: {node_name!r}")
        runtime_dir = s.text("node_runtime")
        if runtime_dir is not None:
            client = find_client(self.file_path(runtime_dir))
            if client is None:
                raise s.error(
                    "node_runtime",
                    f"no built {PACKAGE} in {self.file_path(runtime_dir)!r} (run npm ci there)",
                )
        scripts = node_functions(functions_dir)
        if scripts and node is None:
            raise s.error(
                "functions_dir",
                f"{scripts[0]} is a Node.js function, but there is no 'node' on PATH"
                " (install Node.js, or set [local] node)",
            )
        if scripts and client is None:
            raise s.error(
                "functions_dir",
                f"{scripts[0]} is a Node.js function, but {PACKAGE} is not installed"
                f" ({how_to_install()})",
            )
        return node, client

    def local_env(self, s: _Section) -> tuple[tuple[str, str], ...]:
        env: dict[str, str] = {}
        for line in s.lines("env"):
            name, equals, value = line.partition("=")
            name = name.strip()
            if not equals or not ENV_NAME.fullmatch(name):
                raise s.error("env", f"not a NAME=VALUE line: {line!r}")
            if name in LOCAL_RESERVED_ENV:
                raise s.error("env", f"{name} is set by the local runtime itself")
            if name in env:
                raise s.error("env", f"{name} is given twice")
            env[name] = value.strip()
        return tuple(env.items())

    def read_routes(
        self,
        gateway: GatewayConfig,
        aws: AWSConfig,
        auth: AuthConfig | None,
        local: LocalConfig | None,
    ) -> tuple[RouteConfig, ...]:
        routes: dict[str, RouteConfig] = {}
        for name in self.parser.sections():
            if not name.startswith("route:"):
                continue
            route = self.read_route(name, gateway, aws, auth, local)
            if route.prefix in routes:
                raise ConfigError(
                    f"{self.path}: [{name}]: duplicate prefix {route.prefix!r}"
                    " (/lambda and /lambda/ are the same prefix)"
                )
            routes[route.prefix] = route
        return tuple(routes.values())

    def read_route(
        self,
        name: str,
        gateway: GatewayConfig,
        aws: AWSConfig,
        auth: AuthConfig | None,
        local: LocalConfig | None,
    ) -> RouteConfig:
        s = self.section(name, _ROUTE_KEYS)
        prefix = name[len("route:") :].strip()
        if not prefix.startswith("/") or any(c.isspace() or c in "?#%" for c in prefix):
            raise s.error(None, "the prefix must be a path starting with '/', without ? # %")
        if "//" in prefix or "/./" in prefix + "/" or "/../" in prefix + "/":
            raise s.error(None, "the prefix must be a clean path (no //, . or .. segments)")
        prefix = prefix.rstrip("/") + "/"

        auth_mode = s.text("auth", "basic" if auth is not None else "none")
        assert auth_mode is not None
        scopes = check_route_auth(s, auth_mode, self.authorizers)
        if auth_mode == "basic" and auth is None:
            raise s.error("auth", "'basic' needs an [auth] section with a users_file")

        single = s.text("single")
        arn = FUNCTION_ARN.fullmatch(single) if single else None
        if single is not None and arn is None and not FUNCTION_NAME.fullmatch(single):
            raise s.error("single", f"not a function name or function ARN: {single!r}")
        qualifier = s.text("qualifier")
        if qualifier is not None and not QUALIFIER.fullmatch(qualifier):
            raise s.error("qualifier", f"not a version or alias: {qualifier!r}")
        if arn is not None and arn["qualifier"] and qualifier is not None:
            raise s.error("qualifier", "the ARN in 'single' already names a qualifier")

        include = tuple(self.globs(s, "include"))
        exclude = tuple(self.globs(s, "exclude"))
        affixes = {}
        for key in ("name_prepend", "name_append"):
            value = s.text(key, "")
            assert value is not None
            if not NAME_AFFIX.fullmatch(value):
                raise s.error(key, f"may hold only letters, digits, '-' and '_': {value!r}")
            affixes[key] = value
        if single is not None:
            for key in ("include", "exclude", "name_prepend", "name_append"):
                if s.text(key):
                    raise s.error(key, "has no effect with 'single' (the name is fixed)")

        templates = []
        for line in s.lines("header_upstream"):
            try:
                templates.append(parse_header_template(line))
            except ValueError as e:
                raise s.error("header_upstream", str(e)) from None

        backend = s.choice("backend", BACKENDS, "aws")
        if backend == "local" and local is None:
            raise s.error("backend", "'local' needs a [local] section")
        aws_access, aws_secret = s.text("aws_access"), s.text("aws_secret")
        if (aws_access is None) != (aws_secret is None):
            key = "aws_secret" if aws_secret is None else "aws_access"
            raise s.error(key, "aws_access and aws_secret go together")
        aws_region = s.text("aws_region")
        if aws_region is not None and not REGION.fullmatch(aws_region):
            raise s.error("aws_region", f"not an AWS region: {aws_region!r}")
        region = None
        if backend == "aws":
            region = arn["region"] if arn is not None else self.region(s, aws, aws_region)

        stream = s.boolean("stream", False)
        invocation_type = s.choice("invocation_type", INVOCATION_TYPES, "RequestResponse")
        if stream and invocation_type == "Event":
            raise s.error("stream", "a streamed route cannot use invocation_type = Event")
        log_type = s.choice("log_type", LOG_TYPES, "None")
        if log_type == "Tail" and invocation_type == "Event":
            raise s.error("log_type", "Lambda returns no log for invocation_type = Event")
        role_arn, external_id, session_name = self.role(s, aws.role_session_name)
        if role_arn is None:
            role_arn, external_id = aws.role_arn, aws.external_id
            session_name = aws.role_session_name
        fips, dualstack = self.endpoint_switches(
            s, aws.endpoint_url, aws.use_fips_endpoint, aws.use_dualstack_endpoint
        )
        if not stream:
            for key in ("stream_idle_timeout", "stream_prelude"):
                if s.text(key):
                    raise s.error(key, "has no effect without 'stream = yes'")

        return RouteConfig(
            prefix=prefix,
            backend=backend,
            format=s.choice("format", FORMAT_NAMES, "httpjson"),
            auth=auth_mode,
            timeout=s.duration("timeout", gateway.timeout),
            stream=stream,
            stream_idle_timeout=s.duration("stream_idle_timeout", 30.0),
            stream_prelude=s.choice("stream_prelude", PRELUDE_MODES, "auto"),
            invocation_type=invocation_type,
            aws_access=aws_access,
            aws_secret=aws_secret,
            aws_region=aws_region,
            region=region,
            qualifier=qualifier,
            include=include,
            exclude=exclude,
            name_prepend=affixes["name_prepend"],
            name_append=affixes["name_append"],
            single=single,
            strip_path_prefix=s.boolean("strip_path_prefix", False),
            header_upstream=tuple(templates),
            role_arn=role_arn,
            external_id=external_id,
            role_session_name=session_name,
            use_fips_endpoint=fips,
            use_dualstack_endpoint=dualstack,
            retry_idempotent=s.boolean("retry_idempotent", False),
            log_type=log_type,
            cors=_policy_parsers().parse_cors(s),
            limits=_policy_parsers().parse_route_limits(s, auth_mode),
            scopes=scopes,
        )

    def globs(self, s: _Section, key: str) -> list[str]:
        globs = []
        for word in s.words(key):
            try:
                globs.append(parse_glob(word))
            except ValueError as e:
                raise s.error(key, str(e)) from None
        return globs

    def region(self, s: _Section, aws: AWSConfig, route_region: str | None) -> str:
        candidates = (
            route_region,
            aws.region,
            self.environ.get("AWS_REGION"),
            self.environ.get("AWS_DEFAULT_REGION"),
        )
        for candidate in candidates:
            if candidate:
                return candidate
        # botocore's own order, so the region and the credentials come from
        # the same profile.
        profile = (
            aws.profile
            or self.environ.get("AWS_DEFAULT_PROFILE")
            or self.environ.get("AWS_PROFILE")
        )
        try:
            region = self.profile_region(profile, self.environ)
        except ValueError as e:
            raise ConfigError(f"{self.path}: [aws] profile: {e}") from None
        if region:
            return region
        raise s.error(
            "aws_region",
            "no region for this route: set aws_region here or region in [aws],"
            " or AWS_REGION in the environment",
        )


def authorizer_route(aws: AWSConfig, authorizer: LambdaAuthorizerConfig) -> RouteConfig:
    """
    How a Lambda authorizer's function is invoked: as a route with ``single`` set to it.
    """
    return RouteConfig(
        prefix=f"/{SECTION_PREFIX}{authorizer.name}/",
        backend=authorizer.backend,
        timeout=authorizer.timeout,
        aws_access=authorizer.aws_access,
        aws_secret=authorizer.aws_secret,
        aws_region=authorizer.aws_region,
        region=authorizer.region,
        qualifier=authorizer.qualifier,
        single=authorizer.function,
        role_arn=authorizer.role_arn,
        external_id=authorizer.external_id,
        role_session_name=authorizer.role_session_name,
        use_fips_endpoint=aws.use_fips_endpoint,
        use_dualstack_endpoint=aws.use_dualstack_endpoint,
    )


def authorizer_routes(config: Config) -> list[RouteConfig]:
    """
    The pseudo-routes Lambda authorizers invoke through (for credentials and endpoints).
    """
    return [
        authorizer_route(config.aws, a)
        for a in config.authorizers
        if isinstance(a, LambdaAuthorizerConfig)
    ]
