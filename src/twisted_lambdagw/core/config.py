"""
The configuration: frozen, validated records (read by L{config_reader}),
the patterns and units their values follow, and where relative paths lead.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .authorizers import (
    SECTION_PREFIX,
    AuthorizerConfig,
    LambdaAuthorizerConfig,
)
from .node_runtime import BUNDLED, find_client, find_node
from .patterns import HeaderTemplate

if TYPE_CHECKING:
    from ..policies.cors.config import CorsConfig
    from ..policies.limits.config import RouteLimits, StoreConfig
# Re-exported: these names were always config's.
from .values import BACKENDS as BACKENDS
from .values import DURATION as DURATION
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

SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2,
    "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip


# A host name, an IPv4 address or a bracketed IPv6 one, an optional port, no
# user info and no path: the URL is sent as written, and signed as written.
ENDPOINT_URL = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?/?"
)


class ConfigError(Exception):
    """
    The configuration cannot be used.  Its text is one line for the operator.
    """


TrustedProxy = ipaddress.IPv4Network | ipaddress.IPv6Network | str
"""An address or network, or the word C{unix} for Unix socket peers."""


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
    """Peers whose X-Forwarded-For/-Proto/-Port are believed; C{unix} is a Unix socket."""
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
    The C{[local]} section: where local functions live and how they run.

    C{env} holds the extra environment entries every worker gets, in file
    order; C{python} is the interpreter that runs C{awslambdaric} for
    C{NAME.py} functions.  C{node} and C{node_client} (the entry point of
    C{aws-lambda-ric}) run C{NAME.mjs} and C{NAME.js} functions; either is
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
    One C{[route:PREFIX]} section.

    C{prefix} always ends in C{/}: C{/lambda} and C{/lambda/} are one
    prefix.  C{region} is the region the route's calls go to, already
    resolved from the route, C{[aws]}, the environment or the profile (or
    the ARN in C{single}); it is None only for local routes.  C{role_arn}
    and the endpoint switches are resolved the same way: the route's own
    value, else C{[aws]}'s.
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
    """With C{auth} naming a jwt authorizer: the token must hold one of these."""


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    gateway: GatewayConfig
    aws: AWSConfig
    routes: tuple[RouteConfig, ...]
    auth: AuthConfig | None = None
    local: LocalConfig | None = None
    authorizers: tuple[AuthorizerConfig, ...] = ()
    """The C{[authorizer:NAME]} sections, in file order."""


ProfileRegion = Callable[[str | None, Mapping[str, str]], str | None]


def botocore_profile_region(profile: str | None, environ: Mapping[str, str]) -> str | None:
    """
    The region the botocore profile names, if any.

    C{profile} is already chosen by the caller (None means the default
    profile).  botocore would otherwise look up the profile and the shared
    files in C{os.environ}; they are pinned here so that C{environ} alone
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


def resolve_path(value: str, base_dir: str | None) -> str:
    """
    C{value} joined to C{base_dir} when it is relative and there is a base.
    """
    if base_dir is None or os.path.isabs(value):
        return value
    # Joined, not normalised: ``..`` after a symbolic link is the kernel's
    # to resolve, as it would be for the operator's shell.
    return os.path.join(base_dir, value)


def authorizer_route(aws: AWSConfig, authorizer: LambdaAuthorizerConfig) -> RouteConfig:
    """
    How a Lambda authorizer's function is invoked: as a route with C{single} set to it.
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
