"""
``[authorizer:NAME]`` sections and the routes naming them.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.authorizers import (
    JWTAuthorizerConfig,
    LambdaAuthorizerConfig,
)
from twisted_lambdagw.core.config import Config, ConfigError, authorizer_route
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.invokers.aws.credentials import specs_by_route

PATH = "etc/gw.ini"
JWT = """
[authorizer:users]
type = jwt
issuer = https://login.example.com/realms/main
audience = web-app mobile-app
"""
LAMBDA = """
[authorizer:custom]
type = lambda
function = my-authorizer
"""

NO_AUDIENCE = JWT.replace("audience = web-app mobile-app\n", "")


def parse(text: str) -> Config:
    return parse_config("[aws]\nregion = us-east-1\n" + text, PATH, environ={})


class AuthorizerSectionTests(SynchronousTestCase):
    def assertError(self, text: str, prefix: str) -> None:
        error = self.assertRaises(ConfigError, parse, text)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(f"{PATH}: {prefix}"), message)

    def test_jwt(self) -> None:
        config = parse(
            JWT + "algorithms = ES256 EdDSA\nclock_skew = 30s\n"
            "[route:/api/]\nauth = users\nscopes = orders:read orders:write\n"
        )
        (authorizer,) = config.authorizers
        assert isinstance(authorizer, JWTAuthorizerConfig)
        self.assertEqual(authorizer.audience, ("web-app", "mobile-app"))
        self.assertEqual(authorizer.algorithms, ("ES256", "EdDSA"))
        self.assertEqual(authorizer.clock_skew, 30.0)
        self.assertEqual(authorizer.identity_source.name, "authorization")
        (route,) = config.routes
        self.assertEqual((route.auth, route.scopes), ("users", ("orders:read", "orders:write")))

    def test_lambda(self) -> None:
        config = parse(
            LAMBDA + "result_ttl = 5m\nidentity_source = $request.header.X-Key"
            " $request.querystring.key\naws_region = eu-west-1\n[route:/c/]\nauth = custom\n"
        )
        (authorizer,) = config.authorizers
        assert isinstance(authorizer, LambdaAuthorizerConfig)
        self.assertEqual(authorizer.result_ttl, 300.0)
        self.assertEqual(authorizer.payload_format, "2.0")
        self.assertTrue(authorizer.simple_responses)
        self.assertEqual([s.kind for s in authorizer.identity_sources], ["header", "querystring"])
        route = authorizer_route(config.aws, authorizer)
        self.assertEqual((route.region, authorizer.region), ("eu-west-1", "eu-west-1"))
        self.assertEqual(route.single, "my-authorizer")
        # Its credentials are resolved with the routes'.
        routes = [r for rs in specs_by_route(config).values() for r in rs]
        self.assertIn(route, routes)

    def test_errors(self) -> None:
        route = "[route:/api/]\nauth = users\n"
        for text, prefix in [
            (route, "[route:/api/] auth: must be one of none, basic"),
            (JWT + "algorithms = RS256 HS256\n" + route, "[authorizer:users] algorithms: 'HS256'"),
            (JWT + "algorithms = none\n" + route, "[authorizer:users] algorithms: 'none'"),
            (
                JWT.replace("https://login", "http://login") + route,
                "[authorizer:users] issuer: plain http only for loopback",
            ),
            (JWT + "jwks_uri = http://10.0.0.1/jwks\n" + route, "[authorizer:users] jwks_uri:"),
            (
                JWT.replace("audience = web-app mobile-app\n", "") + route,
                "[authorizer:users] audience: required",
            ),
            (JWT + "color = blue\n" + route, "[authorizer:users] color: unknown key"),
            (JWT + "clock_skew = soon\n" + route, "[authorizer:users] clock_skew: not a duration"),
            (JWT + "identity_source = $request.body.x\n" + route, "[authorizer:users] identity_"),
            (JWT + "[route:/api/]\nauth = none\nscopes = a\n", "[route:/api/] scopes: needs auth"),
            (
                LAMBDA + "result_ttl = 2h\n[route:/c/]\nauth = custom\n",
                "[authorizer:custom] result_ttl",
            ),
            (
                LAMBDA + "payload_format = 1.0\nsimple_responses = yes\n",
                "[authorizer:custom] simple_",
            ),
            (LAMBDA + "backend = local\n", "[authorizer:custom] backend: 'local' needs"),
            (LAMBDA.replace("my-authorizer", "a/b"), "[authorizer:custom] function: not a"),
            ("[authorizer:x]\ntype = saml\n", "[authorizer:x] type: must be jwt or lambda"),
            ("[authorizer:basic]\ntype = jwt\n", "[authorizer:basic]: 'basic' is a reserved"),
        ]:
            self.assertError(text, prefix)

    def test_loopback_http_allowed(self) -> None:
        text = JWT.replace("https://login.example.com", "http://127.0.0.1:9000")
        config = parse(text + "[route:/api/]\nauth = users\n")
        (authorizer,) = config.authorizers
        assert isinstance(authorizer, JWTAuthorizerConfig)
        self.assertEqual(authorizer.issuer, "http://127.0.0.1:9000/realms/main")

    def test_ca_file(self) -> None:
        """
        C{ca_file} is taken relative to the config's directory and must hold a
        PEM certificate; C{lambdagw check} says which CAs are trusted.
        """
        from twisted_lambdagw.daemon.describe import route_table

        from .process_fixtures import temp_dir
        from .tls_fixtures import make_pki

        directory = str(temp_dir(self))
        make_pki(directory)
        with open(os.path.join(directory, "empty.pem"), "w") as f:
            f.write("not a certificate\n")
        path = os.path.join(directory, "gw.ini")
        route = "[route:/api/]\nauth = users\naws_region = us-east-1\n"
        config = parse_config(
            JWT + "ca_file = ca.pem\n" + route, path, environ={}, base_dir=directory
        )
        (authorizer,) = config.authorizers
        assert isinstance(authorizer, JWTAuthorizerConfig)
        self.assertEqual(authorizer.ca_file, os.path.join(directory, "ca.pem"))
        self.assertIn(f", CAs from {authorizer.ca_file})", route_table(config, {}))
        for name, problem in (("empty.pem", "no PEM certificate in"), ("gone.pem", "cannot read")):
            error = self.assertRaises(
                ConfigError,
                parse_config,
                JWT + f"ca_file = {name}\n" + route,
                path,
                {},
                base_dir=directory,
            )
            self.assertEqual(
                str(error),
                f"{path}: [authorizer:users] ca_file: {problem} {os.path.join(directory, name)}"
                + (": No such file or directory" if name == "gone.pem" else ""),
            )


class CheckOutputTests(SynchronousTestCase):
    def test_route_table_names_the_authorizer(self) -> None:
        from twisted_lambdagw.daemon.describe import route_table

        config = parse(
            JWT + LAMBDA + "result_ttl = 5m\n"
            "[route:/api/]\nauth = users\nscopes = read\n[route:/c/]\nauth = custom\n"
        )
        table = route_table(config, {})
        self.assertIn(
            "auth jwt users (issuer https://login.example.com/realms/main, audience web-app"
            " mobile-app, keys from discovery, algorithms RS256 ES256, scopes read)",
            table,
        )
        self.assertIn(
            "auth lambda custom (my-authorizer, aws, payload 2.0, simple responses,"
            " cached 300s, timeout 10s)",
            table,
        )
