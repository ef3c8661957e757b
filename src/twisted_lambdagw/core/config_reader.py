"""
The INI configuration file read, section by section, into the records of
L{twisted_lambdagw.core.config}.

Nothing else in the gateway touches configparser.  Every problem becomes a
L{ConfigError} whose text is one line naming the file, the section and the
key, because that line is all an operator sees when startup refuses to go on.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import replace

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
from .config import (
    ENDPOINT_URL,
    EXTERNAL_ID,
    FORMAT_NAMES,
    INVOCATION_TYPES,
    LOG_TYPES,
    NAME_AFFIX,
    PRELUDE_MODES,
    ROLE_ARN,
    ROLE_SESSION_NAME,
    TLS_VERSIONS,
    AuthConfig,
    AWSConfig,
    Config,
    ConfigError,
    GatewayConfig,
    LocalConfig,
    ProfileRegion,
    RouteConfig,
    TrustedProxy,
    botocore_profile_region,
)
from .config_local import SectionReader
from .config_values import Section
from .describe import one_line
from .endpoint_strings import resolve_files
from .patterns import parse_glob, parse_header_template

# Re-exported: these names were always config's.
from .values import BACKENDS as BACKENDS
from .values import DURATION as DURATION
from .values import FUNCTION_ARN as FUNCTION_ARN
from .values import FUNCTION_NAME as FUNCTION_NAME
from .values import QUALIFIER as QUALIFIER
from .values import REGION as REGION
from .values import invocation_keys


def load_config(
    path: str,
    environ: Mapping[str, str] | None = None,
    profile_region: ProfileRegion = botocore_profile_region,
) -> Config:
    """
    Read and validate the configuration file at C{path}.

    Relative file names in the config (the functions directory, the users
    file, a file access log, the key and certificate files of C{ssl:}
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
    Validate configuration text; C{path} is only used in error messages.

    Relative file names are joined to C{base_dir}; without one (text that
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
        raise ConfigError(f"{path}: {one_line(e)}") from None
    environ = os.environ if environ is None else environ
    return _Reader(parser, path, environ, profile_region, base_dir).read()


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


class _Reader(SectionReader):
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
        Every C{[authorizer:NAME]} section, in file order.
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
        self, s: Section, name: str, aws: AWSConfig, has_local: bool
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

    def listen(self, s: Section) -> list[str]:
        descriptions = []
        for line in s.lines("listen"):
            try:
                descriptions.append(resolve_files(line, self.file_path))
            except ValueError as e:
                raise s.error("listen", f"bad endpoint {line!r}: {e}") from None
        return descriptions

    def trusted_proxies(self, s: Section) -> tuple[TrustedProxy, ...]:
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
        if endpoint_url is not None and not ENDPOINT_URL.fullmatch(endpoint_url):
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

    def role(self, s: Section, default_session_name: str) -> tuple[str | None, str | None, str]:
        """
        C{role_arn}, C{external_id} and C{role_session_name} of a section.
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
        self, s: Section, endpoint_url: str | None, fips: bool, dualstack: bool
    ) -> tuple[bool, bool]:
        """
        C{use_fips_endpoint} and C{use_dualstack_endpoint}, inheriting the defaults.

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

        backend, aws_access, aws_secret, aws_region = invocation_keys(s, local is not None)
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

    def globs(self, s: Section, key: str) -> list[str]:
        globs = []
        for word in s.words(key):
            try:
                globs.append(parse_glob(word))
            except ValueError as e:
                raise s.error(key, str(e)) from None
        return globs

    def region(self, s: Section, aws: AWSConfig, route_region: str | None) -> str:
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
