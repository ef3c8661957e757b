"""
Tests for L{twisted_lambdagw.core.config}: typed values, defaults and strictness.

Every config error must be one line naming the file, the section and the
key, because that line is all an operator sees when startup stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import (
    AuthConfig,
    AWSConfig,
    Config,
    ConfigError,
    GatewayConfig,
    LocalConfig,
    ProfileRegion,
    RouteConfig,
    botocore_profile_region,
)
from twisted_lambdagw.core.config_reader import load_config, parse_config
from twisted_lambdagw.core.node_runtime import find_node
from twisted_lambdagw.core.patterns import HeaderTemplate
from twisted_lambdagw.daemon.tap import check_endpoints

PATH = "etc/test-gw.ini"
REGION_ROUTE = "[aws]\nregion = us-east-1\n[route:/lambda/]\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def no_profile_region(profile: str | None, environ: Mapping[str, str]) -> str | None:
    """
    A profile lookup that finds no region.
    """
    return None


def parse(
    text: str,
    environ: Mapping[str, str] | None = None,
    profile_region: ProfileRegion = no_profile_region,
) -> Config:
    """
    Parse config text with an empty environment and no profile region.
    """
    return parse_config(text, PATH, {} if environ is None else environ, profile_region)


def temp_path(case: SynchronousTestCase) -> str:
    """
    A fresh path in a directory removed after the test (trial's mktemp
    would write into the current directory under pytest).
    """
    directory = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "f")


def route(text: str, environ: Mapping[str, str] | None = None) -> RouteConfig:
    """
    The one route a config text defines.
    """
    (only,) = parse(text, environ).routes
    return only


class ConfigErrorMixin(SynchronousTestCase):
    """
    An assertion for the config error contract.
    """

    def assertConfigError(
        self,
        text: str,
        prefix: str,
        environ: Mapping[str, str] | None = None,
        profile_region: ProfileRegion = no_profile_region,
    ) -> str:
        """
        Parsing ``text`` fails with one line starting with ``PATH: prefix``.
        """
        error = self.assertRaises(ConfigError, parse, text, environ, profile_region)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertTrue(
            message.startswith(f"{PATH}: {prefix}"),
            f"{message!r} does not start with {PATH}: {prefix}",
        )
        return message


class GatewaySectionTests(ConfigErrorMixin):
    """
    The [gateway] section.
    """

    def test_everyKey(self) -> None:
        """
        Every [gateway] key is read into its typed value.
        """
        config = parse(
            "[gateway]\n"
            "listen = tcp:8080:interface=127.0.0.1\n"
            "         tcp:8081:interface=127.0.0.1   ; a second listener\n"
            "max_body_size = 512KB\n"
            "timeout = 2m\n"
            "access_log = -\n"
            "health_path = /health\n"
            "metrics_path = off\n"
            "max_in_flight = 5\n"
            "drain_timeout = 500ms\n"
            "workers = 2\n" + REGION_ROUTE
        )
        self.assertEqual(
            config.gateway,
            GatewayConfig(
                listen=("tcp:8080:interface=127.0.0.1", "tcp:8081:interface=127.0.0.1"),
                max_body_size=512 * 1024,
                timeout=120.0,
                access_log="-",
                health_path="/health",
                metrics_path=None,
                max_in_flight=5,
                drain_timeout=0.5,
                workers=2,
            ),
        )

    def test_defaults(self) -> None:
        """
        A config without [gateway] gets the documented defaults.
        """
        config = parse(REGION_ROUTE)
        self.assertEqual(config.gateway, GatewayConfig())
        self.assertEqual(config.gateway.listen, ("tcp:8080:interface=127.0.0.1",))
        self.assertEqual(config.gateway.max_body_size, 6 * 1024 * 1024)
        self.assertEqual(config.gateway.timeout, 30.0)
        self.assertEqual(config.gateway.health_path, "/healthz")
        self.assertEqual(config.gateway.metrics_path, "/metrics")
        self.assertEqual(config.path, PATH)

    def test_sizes(self) -> None:
        """
        Sizes take KB/MB/GB (and KiB...) in any case, or plain bytes.
        """
        cases = {
            "6MB": 6 * 1024 * 1024,
            "512KB": 512 * 1024,
            "1024": 1024,
            "6mb": 6 * 1024 * 1024,
            "2 KiB": 2048,
            "1GB": 1024**3,
            "10b": 10,
        }
        for text, expected in cases.items():
            config = parse(f"[gateway]\nmax_body_size = {text}\n" + REGION_ROUTE)
            self.assertEqual(config.gateway.max_body_size, expected, text)

    def test_durations(self) -> None:
        """
        Durations take plain seconds, s, m, h or ms, in any case.
        """
        cases = {
            "30": 30.0,
            "30s": 30.0,
            "2m": 120.0,
            "500ms": 0.5,
            "1h": 3600.0,
            "1.5S": 1.5,
            "250MS": 0.25,
        }
        for text, expected in cases.items():
            config = parse(f"[gateway]\ntimeout = {text}\ndrain_timeout = {text}\n" + REGION_ROUTE)
            self.assertEqual(config.gateway.timeout, expected, text)
            self.assertEqual(config.gateway.drain_timeout, expected, text)

    def test_badSize(self) -> None:
        """
        A size that is not a number with a known unit is an error at its key.
        """
        for text in ("6 megabytes", "-1", "1.5MB", "MB", "6TB"):
            self.assertConfigError(
                f"[gateway]\nmax_body_size = {text}\n" + REGION_ROUTE,
                "[gateway] max_body_size: not a size",
            )

    def test_badDuration(self) -> None:
        """
        A duration that is not a number with a known unit is an error.
        """
        for text in ("soon", "5 minutes", "-1s", "1d", "s"):
            self.assertConfigError(
                f"[gateway]\ntimeout = {text}\n" + REGION_ROUTE,
                "[gateway] timeout: not a positive duration",
            )

    def test_nonPositiveDuration(self) -> None:
        """
        A zero duration is refused: a zero timeout would fail every request.
        """
        for text in ("0", "0s", "0ms", "0.0"):
            self.assertConfigError(
                f"[gateway]\ndrain_timeout = {text}\n" + REGION_ROUTE,
                "[gateway] drain_timeout: not a positive duration",
            )
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\ntimeout = {text}\n",
                "[route:/x/] timeout: not a positive duration",
            )

    def test_badInteger(self) -> None:
        """
        workers and max_in_flight must be whole numbers of at least one.
        """
        for key in ("workers", "max_in_flight"):
            for text in ("0", "-2", "two", "1.5"):
                self.assertConfigError(
                    f"[gateway]\n{key} = {text}\n" + REGION_ROUTE,
                    f"[gateway] {key}: not an integer",
                )

    def test_badPath(self) -> None:
        """
        health_path and metrics_path are paths starting with '/'.
        """
        for key in ("health_path", "metrics_path"):
            self.assertConfigError(
                f"[gateway]\n{key} = healthz\n" + REGION_ROUTE,
                f"[gateway] {key}: must be a path",
            )


class AWSSectionTests(ConfigErrorMixin):
    """
    The [aws] section.
    """

    def test_everyKey(self) -> None:
        """
        Every [aws] key is read; the endpoint URL loses a trailing slash.
        """
        config = parse(
            "[aws]\n"
            "region = eu-west-1\n"
            "profile = dev\n"
            "access_key_id = AKIDEXAMPLE\n"
            "secret_access_key = secret\n"
            "session_token = token\n"
            "endpoint_url = http://127.0.0.1:3002/\n"
            "[route:/lambda/]\n"
        )
        self.assertEqual(
            config.aws,
            AWSConfig(
                region="eu-west-1",
                profile="dev",
                access_key_id="AKIDEXAMPLE",
                secret_access_key="secret",
                session_token="token",
                endpoint_url="http://127.0.0.1:3002",
            ),
        )

    def test_endpointURLForms(self) -> None:
        """
        A host name, an IPv4 address or a bracketed IPv6 one, with or without a port.
        """
        for url in (
            "https://lambda.example.com",
            "http://localhost:9001",
            "http://127.0.0.1:3002/",
            "http://[::1]:3002",
        ):
            config = parse(f"[aws]\nregion = eu-west-1\nendpoint_url = {url}\n[route:/lambda/]\n")
            self.assertEqual(config.aws.endpoint_url, url.rstrip("/"))

    def test_secretNotInRepr(self) -> None:
        """
        The secret key and the session token never show in a repr (or a log).
        """
        config = parse(
            "[aws]\nregion = eu-west-1\naccess_key_id = AKID\n"
            "secret_access_key = s3cr3t\nsession_token = t0ken\n"
            "[route:/lambda/]\naws_access = AKID2\naws_secret = r0ute\n"
        )
        self.assertNotIn("s3cr3t", repr(config))
        self.assertNotIn("t0ken", repr(config))
        self.assertNotIn("r0ute", repr(config))

    def test_emptyValuesAreUnset(self) -> None:
        """
        ``key =`` with nothing after it leaves the key unset.
        """
        config = parse(
            "[aws]\nregion = eu-west-1\nprofile =\naccess_key_id =\n"
            "secret_access_key =\nsession_token =\nendpoint_url =\n[route:/lambda/]\n"
        )
        self.assertEqual(config.aws, AWSConfig(region="eu-west-1"))

    def test_accessKeyWithoutSecret(self) -> None:
        """
        A static key id without its secret, or the reverse, is an error.
        """
        self.assertConfigError(
            "[aws]\nregion = eu-west-1\naccess_key_id = AKID\n[route:/lambda/]\n",
            "[aws] secret_access_key: ",
        )
        self.assertConfigError(
            "[aws]\nregion = eu-west-1\nsecret_access_key = s\n[route:/lambda/]\n",
            "[aws] access_key_id: ",
        )

    def test_badRegion(self) -> None:
        """
        A region that does not look like one is an error at its key.
        """
        self.assertConfigError(
            "[aws]\nregion = the moon\n[route:/lambda/]\n", "[aws] region: not an AWS region"
        )

    def test_badEndpointURL(self) -> None:
        """
        endpoint_url must be an http(s) URL with an ASCII host and without a
        path or user info (it is sent and signed as written).
        """
        for url in (
            "127.0.0.1:3002",
            "ftp://host",
            "http://host/path",
            "http://user@host",
            "http://h\u00f6st",
            "http://host:port",
            "http://host?x=1",
        ):
            self.assertConfigError(
                f"[aws]\nregion = eu-west-1\nendpoint_url = {url}\n[route:/lambda/]\n",
                "[aws] endpoint_url: ",
            )


class AuthAndLocalSectionTests(ConfigErrorMixin):
    """
    The [auth] and [local] sections, and the routes that need them.
    """

    def test_auth(self) -> None:
        """
        [auth] is read, and turns basic auth on for every route by default.
        """
        config = parse(
            "[auth]\nrealm = staff\nusers_file = etc/users\n"
            "[aws]\nregion = us-east-1\n"
            "[route:/a/]\n[route:/b/]\nauth = none\n"
        )
        self.assertEqual(config.auth, AuthConfig(realm="staff", users_file="etc/users"))
        self.assertEqual({r.prefix: r.auth for r in config.routes}, {"/a/": "basic", "/b/": "none"})

    def test_authDefaultRealm(self) -> None:
        """
        The realm defaults to lambdagw.
        """
        config = parse("[auth]\nusers_file = etc/users\n" + REGION_ROUTE)
        self.assertEqual(config.auth, AuthConfig(realm="lambdagw", users_file="etc/users"))

    def test_authWithoutUsersFile(self) -> None:
        """
        [auth] without users_file is an error at that key.
        """
        self.assertConfigError("[auth]\nrealm = x\n" + REGION_ROUTE, "[auth] users_file: ")

    def test_realmWithQuote(self) -> None:
        """
        A realm with a quote would break the WWW-Authenticate header.
        """
        self.assertConfigError(
            '[auth]\nrealm = a"b\nusers_file = u\n' + REGION_ROUTE, "[auth] realm: "
        )

    def test_basicWithoutAuthSection(self) -> None:
        """
        auth = basic on a route needs an [auth] section.
        """
        self.assertConfigError(
            "[aws]\nregion = us-east-1\n[route:/lambda]\nauth = basic\n",
            "[route:/lambda] auth: 'basic' needs an [auth] section",
        )

    def test_local(self) -> None:
        """
        A local route needs no region: it never calls AWS.
        """
        functions_dir = temp_path(self)
        os.mkdir(functions_dir)
        config = parse(
            f"[local]\nfunctions_dir = {functions_dir}\n[route:/local/]\nbackend = local\n"
        )
        self.assertEqual(
            config.local,
            LocalConfig(functions_dir=functions_dir, node=find_node("node", os.defpath)),
        )
        self.assertEqual(config.routes[0].backend, "local")
        self.assertIsNone(config.routes[0].region)

    def test_localWithoutFunctionsDir(self) -> None:
        """
        [local] without functions_dir is an error at that key.
        """
        self.assertConfigError("[local]\n" + REGION_ROUTE, "[local] functions_dir: ")

    def test_localBackendWithoutLocalSection(self) -> None:
        """
        backend = local without [local] names the route's section as written.
        """
        self.assertConfigError(
            "[route:/local]\nbackend = local\n",
            "[route:/local] backend: 'local' needs a [local] section",
        )


class RouteSectionTests(ConfigErrorMixin):
    """
    [route:PREFIX] sections: every caddy-awslambda option and the new ones.
    """

    def test_everyKey(self) -> None:
        """
        Every route key is read into its typed value.
        """
        config = parse(
            "[auth]\nusers_file = etc/users\n"
            "[route:/api]\n"
            "backend = aws\n"
            "format = httpjson\n"
            "auth = basic\n"
            "timeout = 2m\n"
            "stream = yes\n"
            "invocation_type = RequestResponse\n"
            "aws_access = AKIDROUTE\n"
            "aws_secret = routesecret\n"
            "aws_region = ap-southeast-2\n"
            "qualifier = prod\n"
            "include = hello* *-api\n"
            "          *mid* exact\n"
            "exclude = *-internal\n"
            "name_prepend = acme-\n"
            "name_append = -v2\n"
            "strip_path_prefix = on\n"
            "header_upstream = X-Real-IP {remote}\n"
            "                  X-Trace   id={request_id}  via  {scheme}\n"
        )
        self.assertEqual(
            config.routes,
            (
                RouteConfig(
                    prefix="/api/",
                    backend="aws",
                    format="httpjson",
                    auth="basic",
                    timeout=120.0,
                    stream=True,
                    invocation_type="RequestResponse",
                    aws_access="AKIDROUTE",
                    aws_secret="routesecret",
                    aws_region="ap-southeast-2",
                    region="ap-southeast-2",
                    qualifier="prod",
                    include=("hello*", "*-api", "*mid*", "exact"),
                    exclude=("*-internal",),
                    name_prepend="acme-",
                    name_append="-v2",
                    single=None,
                    strip_path_prefix=True,
                    header_upstream=(
                        HeaderTemplate("X-Real-IP", "{remote}"),
                        HeaderTemplate("X-Trace", "id={request_id}  via  {scheme}"),
                    ),
                ),
            ),
        )

    def test_defaults(self) -> None:
        """
        A bare route section gets the documented defaults.
        """
        self.assertEqual(route(REGION_ROUTE), RouteConfig(prefix="/lambda/", region="us-east-1"))

    def test_timeoutDefaultsToGateway(self) -> None:
        """
        A route without timeout uses the [gateway] timeout.
        """
        config = parse("[gateway]\ntimeout = 2m\n" + REGION_ROUTE)
        self.assertEqual(config.routes[0].timeout, 120.0)

    def test_booleans(self) -> None:
        """
        Booleans take 1/0, yes/no, true/false, on/off in any case.
        """
        for text, expected in [
            *((t, True) for t in ("1", "yes", "true", "on", "YES", "True", "oN")),
            *((t, False) for t in ("0", "no", "false", "off", "NO", "False", "OFF")),
        ]:
            parsed = route(f"{REGION_ROUTE}strip_path_prefix = {text}\nstream = {text}\n")
            self.assertEqual(parsed.strip_path_prefix, expected, text)
            self.assertEqual(parsed.stream, expected, text)

    def test_badBoolean(self) -> None:
        """
        Anything else is an error, not silently false as in the original.
        """
        for text in ("y", "maybe", "2", "enabled"):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\nstrip_path_prefix = {text}\n",
                "[route:/x/] strip_path_prefix: not a boolean",
            )

    def test_eventInvocation(self) -> None:
        """
        invocation_type = Event is read; streaming it is an error.
        """
        self.assertEqual(route(REGION_ROUTE + "invocation_type = Event\n").invocation_type, "Event")
        self.assertConfigError(
            "[aws]\nregion = us-east-1\n[route:/x/]\nstream = yes\ninvocation_type = Event\n",
            "[route:/x/] stream: ",
        )

    def test_badChoices(self) -> None:
        """
        backend, format, auth and invocation_type take only their listed values.
        """
        for key in ("backend", "format", "auth", "invocation_type"):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\n{key} = bogus\n",
                f"[route:/x/] {key}: must be one of",
            )

    def test_prefixSlashIsOptional(self) -> None:
        """
        /lambda and /lambda/ are the same prefix.
        """
        self.assertEqual(route("[aws]\nregion = us-east-1\n[route:/lambda]\n").prefix, "/lambda/")
        self.assertEqual(route("[aws]\nregion = us-east-1\n[route:/lambda/]\n").prefix, "/lambda/")
        self.assertEqual(route("[aws]\nregion = us-east-1\n[route:/]\n").prefix, "/")

    def test_duplicatePrefix(self) -> None:
        """
        Two sections for /lambda and /lambda/ are a duplicate prefix.
        """
        self.assertConfigError(
            "[aws]\nregion = us-east-1\n[route:/lambda]\n[route:/lambda/]\n",
            "[route:/lambda/]: duplicate prefix '/lambda/'",
        )

    def test_badPrefix(self) -> None:
        """
        A prefix must be a clean path starting with '/'.
        """
        for prefix in ("lambda/", "/a?b", "/a#b", "/a%20b", "/a b", "/a//b", "/a/../b", "/a/."):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:{prefix}]\n", f"[route:{prefix}]: "
            )

    def test_noRoute(self) -> None:
        """
        A config with no route serves nothing and is refused.
        """
        error = self.assertRaises(ConfigError, parse, "[aws]\nregion = us-east-1\n")
        self.assertEqual(str(error), f"{PATH}: no [route:PREFIX] section: nothing to serve")

    def test_badGlob(self) -> None:
        """
        A '*' inside a glob (which never matched in the original) is an error.
        """
        for glob in ("a*b", "**", "a.b", "*a*b", "*a**"):
            for key in ("include", "exclude"):
                self.assertConfigError(
                    f"[aws]\nregion = us-east-1\n[route:/x/]\n{key} = ok {glob}\n",
                    f"[route:/x/] {key}: not a name glob: {glob!r}",
                )

    def test_bareStarGlob(self) -> None:
        """
        A bare '*' is a valid glob (section 9.4: the original panicked on it).
        """
        self.assertEqual(route(REGION_ROUTE + "include = *\n").include, ("*",))

    def test_qualifiers(self) -> None:
        """
        A qualifier is a version, an alias or $LATEST.
        """
        for qualifier in ("prod", "42", "$LATEST", "blue_green-2"):
            self.assertEqual(route(f"{REGION_ROUTE}qualifier = {qualifier}\n").qualifier, qualifier)

    def test_badQualifier(self) -> None:
        """
        A qualifier with ':' or '.' (or too long) is an error.
        """
        for qualifier in ("prod:1", "a.b", "$latest", "x" * 129):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\nqualifier = {qualifier}\n",
                "[route:/x/] qualifier: not a version or alias",
            )

    def test_badAffix(self) -> None:
        """
        name_prepend/name_append hold only name characters.
        """
        for key in ("name_prepend", "name_append"):
            for value in ("a.b", "a:b", "x" * 64):
                self.assertConfigError(
                    f"[aws]\nregion = us-east-1\n[route:/x/]\n{key} = {value}\n",
                    f"[route:/x/] {key}: ",
                )

    def test_singleName(self) -> None:
        """
        single may be a function name; the route's region is used.
        """
        parsed = route(REGION_ROUTE + "single = hello\n")
        self.assertEqual((parsed.single, parsed.region), ("hello", "us-east-1"))

    def test_singleARN(self) -> None:
        """
        single may be a full ARN, whose region wins over every other.
        """
        arn = "arn:aws:lambda:eu-central-1:123456789012:function:hello"
        parsed = route(
            f"[aws]\nregion = us-east-1\n[route:/x/]\naws_region = us-west-2\nsingle = {arn}\n"
        )
        self.assertEqual((parsed.single, parsed.region), (arn, "eu-central-1"))

    def test_singleARNNeedsNoOtherRegion(self) -> None:
        """
        With an ARN in single, no region is needed anywhere else.
        """

        def fail(profile: str | None, environ: Mapping[str, str]) -> str | None:
            raise AssertionError("the profile was consulted")

        arn = "arn:aws:lambda:eu-central-1:123456789012:function:hello:prod"
        (parsed,) = parse(f"[route:/x/]\nsingle = {arn}\n", {}, fail).routes
        self.assertEqual((parsed.single, parsed.region), (arn, "eu-central-1"))

    def test_singleARNPartitions(self) -> None:
        """
        ARNs of the other partitions are accepted, with their own regions.
        """
        for partition, region in [
            ("aws-cn", "cn-north-1"),
            ("aws-us-gov", "us-gov-west-1"),
            ("aws-iso", "us-iso-east-1"),
        ]:
            arn = f"arn:{partition}:lambda:{region}:123456789012:function:fn"
            parsed = route(f"[route:/x/]\nsingle = {arn}\n")
            self.assertEqual((parsed.single, parsed.region), (arn, region))

    def test_badSingle(self) -> None:
        """
        single must be a valid name or a full function ARN.
        """
        for single in (
            "a:b",
            "a.b",
            "x" * 65,
            "arn:aws:lambda:us-east-1:123:function:x",
            "arn:aws:s3:us-east-1:123456789012:function:x",
            "arn:aws:lambda:us-east-1:123456789012:function:x:a.b",
        ):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\nsingle = {single}\n",
                "[route:/x/] single: not a function name or function ARN",
            )

    def test_singleARNQualifierTwice(self) -> None:
        """
        A qualifier in the ARN and a qualifier key is an error.
        """
        arn = "arn:aws:lambda:eu-central-1:123456789012:function:hello:prod"
        self.assertConfigError(
            f"[route:/x/]\nsingle = {arn}\nqualifier = dev\n",
            "[route:/x/] qualifier: the ARN in 'single' already names a qualifier",
        )

    def test_singleWithNameOptions(self) -> None:
        """
        include, exclude, name_prepend and name_append do nothing with single: an error.
        """
        for key in ("include", "exclude", "name_prepend", "name_append"):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\nsingle = hello\n{key} = abc\n",
                f"[route:/x/] {key}: has no effect with 'single'",
            )

    def test_routeAccessWithoutSecret(self) -> None:
        """
        aws_access without aws_secret, or the reverse, is an error.
        """
        self.assertConfigError(
            "[aws]\nregion = us-east-1\n[route:/x/]\naws_access = AKID\n",
            "[route:/x/] aws_secret: aws_access and aws_secret go together",
        )
        self.assertConfigError(
            "[aws]\nregion = us-east-1\n[route:/x/]\naws_secret = s\n",
            "[route:/x/] aws_access: aws_access and aws_secret go together",
        )

    def test_badRouteRegion(self) -> None:
        """
        A route aws_region that is not a region is an error.
        """
        self.assertConfigError(
            "[route:/x/]\naws_region = useast1\n", "[route:/x/] aws_region: not an AWS region"
        )

    def test_unknownPlaceholder(self) -> None:
        """
        A header_upstream placeholder the gateway does not fill is an error.
        """
        message = self.assertConfigError(
            REGION_ROUTE.replace("/lambda/", "/x/") + "header_upstream = X-Host {hostonly}\n",
            "[route:/x/] header_upstream: unknown placeholder {hostonly}",
        )
        self.assertIn("{remote}", message)

    def test_badHeaderUpstream(self) -> None:
        """
        A header_upstream line needs a valid header name and a value.
        """
        for line in ("X@Y value", "X-Alone", "Bad:Name {remote}"):
            self.assertConfigError(
                f"[aws]\nregion = us-east-1\n[route:/x/]\nheader_upstream = {line}\n",
                "[route:/x/] header_upstream: ",
            )

    def test_headerUpstreamTab(self) -> None:
        """
        A tab may separate the header name from its value, as in a Caddyfile.
        """
        parsed = route(REGION_ROUTE + "header_upstream = X-Real-IP\t{remote}  x\n")
        self.assertEqual(parsed.header_upstream, (HeaderTemplate("X-Real-IP", "{remote}  x"),))


class RegionTests(ConfigErrorMixin):
    """
    Where an AWS route's region comes from, most specific first.
    """

    def test_noRegion(self) -> None:
        """
        An AWS route with no region anywhere fails at startup, naming aws_region.
        """
        self.assertConfigError("[route:/lambda]\n", "[route:/lambda] aws_region: no region")

    def test_order(self) -> None:
        """
        route aws_region, then [aws] region, AWS_REGION, AWS_DEFAULT_REGION, the profile.
        """

        def profile(name: str | None, environ: Mapping[str, str]) -> str | None:
            return "sa-east-1"

        sources = [
            ("route", "ap-south-1"),
            ("aws", "eu-west-3"),
            ("AWS_REGION", "ca-central-1"),
            ("AWS_DEFAULT_REGION", "me-south-1"),
        ]
        for skipped in range(len(sources) + 1):
            given = dict(sources[skipped:])
            text = ""
            if "aws" in given:
                text += f"[aws]\nregion = {given['aws']}\n"
            text += "[route:/x/]\n"
            if "route" in given:
                text += f"aws_region = {given['route']}\n"
            environ = {k: v for k, v in given.items() if k.startswith("AWS_")}
            (parsed,) = parse(text, environ, profile).routes
            expected = sources[skipped][1] if skipped < len(sources) else "sa-east-1"
            self.assertEqual(parsed.region, expected, given)

    def test_profileSeesInjectedEnvironment(self) -> None:
        """
        The profile lookup gets the [aws] profile and the injected environment.
        """
        calls: list[tuple[str | None, Mapping[str, str]]] = []

        def profile(name: str | None, environ: Mapping[str, str]) -> str | None:
            calls.append((name, environ))
            return "eu-north-1"

        environ = {"AWS_PROFILE": "ignored-for-aws-profile"}
        (parsed,) = parse("[aws]\nprofile = dev\n[route:/x/]\n", environ, profile).routes
        self.assertEqual(parsed.region, "eu-north-1")
        self.assertEqual(calls, [("dev", environ)])

    def writeAWSConfig(self) -> str:
        """
        A shared AWS config file with a default and two named profiles.
        """
        path = temp_path(self)
        with open(path, "w") as f:
            f.write(
                "[default]\nregion = eu-north-1\n"
                "[profile dev]\nregion = ap-south-1\n"
                "[profile noregion]\noutput = json\n"
            )
        return path

    def test_botocoreDefaultProfile(self) -> None:
        """
        botocore reads the default profile's region from AWS_CONFIG_FILE.
        """
        environ = {"AWS_CONFIG_FILE": self.writeAWSConfig()}
        (parsed,) = parse("[route:/x/]\n", environ, botocore_profile_region).routes
        self.assertEqual(parsed.region, "eu-north-1")

    def test_botocoreNamedProfile(self) -> None:
        """
        [aws] profile, AWS_PROFILE and AWS_DEFAULT_PROFILE each name the profile.
        """
        config_file = self.writeAWSConfig()
        for text, environ in [
            ("[aws]\nprofile = dev\n[route:/x/]\n", {}),
            ("[route:/x/]\n", {"AWS_PROFILE": "dev"}),
            ("[route:/x/]\n", {"AWS_DEFAULT_PROFILE": "dev"}),
        ]:
            environ = {**environ, "AWS_CONFIG_FILE": config_file}
            (parsed,) = parse(text, environ, botocore_profile_region).routes
            self.assertEqual(parsed.region, "ap-south-1", environ)

    def test_botocoreProfileWithoutRegion(self) -> None:
        """
        A profile without a region leaves the route with none: an error.
        """
        environ = {"AWS_CONFIG_FILE": self.writeAWSConfig(), "AWS_PROFILE": "noregion"}
        self.assertConfigError(
            "[route:/x/]\n",
            "[route:/x/] aws_region: no region",
            environ,
            botocore_profile_region,
        )

    def test_botocoreMissingProfile(self) -> None:
        """
        A profile that does not exist is an error naming [aws] profile.
        """
        environ = {"AWS_CONFIG_FILE": self.writeAWSConfig()}
        self.assertConfigError(
            "[aws]\nprofile = nope\n[route:/x/]\n",
            "[aws] profile: no such AWS profile 'nope'",
            environ,
            botocore_profile_region,
        )

    def test_botocoreBrokenConfigFile(self) -> None:
        """
        An AWS config file botocore cannot parse is a config error, not a traceback.
        """
        path = temp_path(self)
        with open(path, "w") as f:
            f.write("[default\nregion")
        self.assertConfigError(
            "[route:/x/]\n",
            "[aws] profile: ",
            {"AWS_CONFIG_FILE": path},
            botocore_profile_region,
        )


class StrictnessTests(ConfigErrorMixin):
    """
    Unknown names and malformed files are errors, never ignored.
    """

    def test_unknownSection(self) -> None:
        """
        A section that is not part of the contract is an error.
        """
        for name in ("gatway", "Gateway", "routes", "route"):
            self.assertConfigError(f"[{name}]\n" + REGION_ROUTE, f"[{name}]: unknown section")

    def test_unknownKey(self) -> None:
        """
        A misspelled key in any section is an error naming it (section 9.5).
        """
        for section, key in [
            ("gateway", "listn"),
            ("auth", "realms"),
            ("local", "dir"),
        ]:
            self.assertConfigError(
                f"[{section}]\n{key} = x\n" + REGION_ROUTE, f"[{section}] {key}: unknown key"
            )
        self.assertConfigError(
            "[aws]\nregion = us-east-1\nregoin = us-east-1\n[route:/x/]\n",
            "[aws] regoin: unknown key",
        )
        self.assertConfigError(
            "[aws]\nregion = us-east-1\n[route:/x/]\naws_regoin = us-east-1\n",
            "[route:/x/] aws_regoin: unknown key",
        )

    def test_syntaxError(self) -> None:
        """
        Text configparser cannot read is one line naming the file.
        """
        for text in (
            "listen = x\n",
            "[gateway]\nlisten\n",
            REGION_ROUTE + "qualifier = a\nqualifier = b\n",
        ):
            self.assertConfigError(text, "")

    def test_bundledConfig(self) -> None:
        """
        The bundled etc/gw.ini is valid.
        """
        config = load_config(os.path.join(ROOT, "etc", "gw.ini"), {}, no_profile_region)
        self.assertEqual([r.prefix for r in config.routes], ["/lambda/"])

    def test_loadMissingFile(self) -> None:
        """
        A config file that cannot be read is one line naming it.
        """
        path = temp_path(self)
        error = self.assertRaises(ConfigError, load_config, path, {}, no_profile_region)
        self.assertTrue(str(error).startswith(f"{path}: cannot read config file: "))
        self.assertNotIn("\n", str(error))

    def test_loadNotUTF8(self) -> None:
        """
        A config file that is not UTF-8 is one line naming it.
        """
        path = temp_path(self)
        with open(path, "wb") as f:
            f.write(b"[aws]\nregion = us-east-1\n[route:/caf\xe9/]\n")
        error = self.assertRaises(ConfigError, load_config, path, {}, no_profile_region)
        self.assertEqual(str(error), f"{path}: config file is not UTF-8 text")

    def test_loadFile(self) -> None:
        """
        load_config reads a UTF-8 file and records its path.
        """
        path = temp_path(self)
        with open(path, "w", encoding="utf-8") as f:
            f.write("; caf\u00e9\n" + REGION_ROUTE)
        config = load_config(path, {}, no_profile_region)
        self.assertEqual(config.path, path)
        self.assertEqual(config.routes[0].region, "us-east-1")


class CheckEndpointsTests(SynchronousTestCase):
    """
    L{check_endpoints} refuses listen endpoints that cannot work.
    """

    def config(self, listen: str) -> Config:
        return parse(f"[gateway]\nlisten = {listen}\n" + REGION_ROUTE)

    def assertEndpointError(self, listen: str) -> None:
        error = self.assertRaises(
            ConfigError, check_endpoints, self.config(listen), MemoryReactor()
        )
        message = str(error)
        self.assertTrue(
            message.startswith(f"{PATH}: [gateway] listen: bad endpoint {listen!r}: "), message
        )
        self.assertNotIn("\n", message)

    def test_valid(self) -> None:
        """
        A well-formed TCP endpoint passes.
        """
        check_endpoints(self.config("tcp:8080:interface=127.0.0.1"), MemoryReactor())

    def test_malformed(self) -> None:
        """
        A malformed endpoint string is one line naming [gateway] listen.
        """
        for listen in ("tcp:notaport", "nosuchtype:8080", "tcp:8080:bogus=1"):
            self.assertEndpointError(listen)

    def test_sslMissingKey(self) -> None:
        """
        An ssl endpoint whose key file is missing is refused before listening.
        """
        missing = temp_path(self)
        self.assertEndpointError(f"ssl:8443:privateKey={missing}:certKey={missing}")
