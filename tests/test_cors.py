"""
The route's CORS step: its config keys, preflights answered before anything
else, and the headers every answer to an allowed origin carries.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.core.errors import Forbidden
from twisted_lambdagw.core.messages import Reply
from twisted_lambdagw.policies.cors.config import CorsConfig
from twisted_lambdagw.policies.cors.step import CorsStep

from .policy_fixtures import Passage, passage, route_from

KEYS = """
cors_allow_origins = https://app.example.com https://*.example.org http://localhost:3000
cors_allow_methods = GET post
cors_allow_headers = Authorization content-type
cors_expose_headers = x-request-id
cors_max_age = 10m
cors_allow_credentials = yes
"""


def cors(keys: str = KEYS) -> CorsConfig:
    config = route_from(keys).cors
    assert config is not None
    return config


def run(step: CorsStep, p: Passage) -> Reply | None:
    """
    Run the step (it never waits); its refusal is raised here.
    """
    d = Deferred.fromCoroutine(step(p))
    results: list[Reply | Failure | None] = []
    d.addBoth(results.append)
    (result,) = results
    if isinstance(result, Failure):
        result.raiseException()
    assert not isinstance(result, Failure)
    return result


class ConfigTests(SynchronousTestCase):
    def error(self, keys: str) -> str:
        with self.assertRaises(ConfigError) as caught:
            route_from(keys)
        return str(caught.exception)

    def test_absent(self) -> None:
        self.assertIsNone(route_from("").cors)

    def test_parsed(self) -> None:
        config = cors()
        self.assertEqual(
            config.origins, frozenset({"https://app.example.com", "http://localhost:3000"})
        )
        self.assertEqual(config.methods, ("GET", "POST"))
        self.assertEqual(config.headers, ("authorization", "content-type"))
        self.assertEqual(config.expose_headers, ("x-request-id",))
        self.assertEqual(config.max_age, 600)
        self.assertTrue(config.credentials)

    def test_star_with_credentials(self) -> None:
        self.assertEqual(
            self.error("cors_allow_origins = *\ncors_allow_credentials = yes"),
            "gw.ini: [route:/api] cors_allow_origins: '*' cannot go with"
            " cors_allow_credentials = yes (browsers refuse it): list the origins",
        )

    def test_bad_origins(self) -> None:
        for word in ("app.example.com", "https://app.example.com/", "ftp://x.example",
                     "https://*.com.*", "https://a.*.example.com", "HTTPS://APP.EXAMPLE.COM",
                     "https://*"):  # fmt: skip
            self.assertIn(
                "gw.ini: [route:/api] cors_allow_origins: ",
                self.error(f"cors_allow_origins = {word}"),
                word,
            )

    def test_other_key_without_origins(self) -> None:
        self.assertEqual(
            self.error("cors_allow_methods = GET"),
            "gw.ini: [route:/api] cors_allow_origins: required with any other cors_* key",
        )

    def test_bad_method(self) -> None:
        self.assertIn("cors_allow_methods: not a method", self.error(
            "cors_allow_origins = *\ncors_allow_methods = GET, POST"
        ))  # fmt: skip


class WildcardTests(SynchronousTestCase):
    """
    C{https://*.example.org} is any subdomain at any depth, same scheme and port.
    """

    def test_matches(self) -> None:
        config = cors()
        for origin in ("https://a.example.org", "https://a.b.example.org"):
            self.assertTrue(config.allows_origin(origin), origin)
        for origin in ("https://example.org", "https://badexample.org", "http://a.example.org",
                       "https://a.example.org:8443", "https://a.example.org.evil.test",
                       "https://*.example.org", "null", "https://app.example.com:443"):  # fmt: skip
            self.assertFalse(config.allows_origin(origin), origin)


class PreflightTests(SynchronousTestCase):
    def preflight(
        self, origin: bytes, method: bytes = b"POST", headers: bytes | None = None
    ) -> tuple[Passage, Reply | None]:
        p = passage(
            route_from(KEYS),
            b"OPTIONS",
            [(b"origin", origin), (b"access-control-request-method", method)]
            + ([(b"access-control-request-headers", headers)] if headers else []),
        )
        reply = run(CorsStep(cors()), p)
        # As the resource sends it: the passage's answer headers applied.
        return p, None if reply is None else p.answer(reply)

    def test_allowed(self) -> None:
        _, reply = self.preflight(b"https://app.example.com", headers=b"Content-Type")
        assert reply is not None
        self.assertEqual(reply.status, 204)
        self.assertEqual(
            list(reply.headers),
            [
                ("Vary", "Origin"),
                ("Access-Control-Allow-Origin", "https://app.example.com"),
                ("Access-Control-Allow-Methods", "GET, POST"),
                ("Access-Control-Allow-Headers", "authorization, content-type"),
                ("Access-Control-Max-Age", "600"),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers"),
            ],
        )

    def test_other_origin(self) -> None:
        with self.assertRaises(Forbidden):
            self.preflight(b"https://evil.example.net")

    def test_other_method(self) -> None:
        with self.assertRaises(Forbidden):
            self.preflight(b"https://app.example.com", b"DELETE")

    def test_other_header(self) -> None:
        with self.assertRaises(Forbidden):
            self.preflight(b"https://app.example.com", headers=b"x-secret")

    def test_refused_carries_no_allow_headers(self) -> None:
        p = passage(
            route_from(KEYS),
            b"OPTIONS",
            [(b"origin", b"https://evil.example.net"), (b"access-control-request-method", b"GET")],
        )
        d = Deferred.fromCoroutine(CorsStep(cors())(p))
        self.failureResultOf(d, Forbidden)
        self.assertEqual(p.answer_headers, [("Vary", "Origin")])

    def test_star_echoes(self) -> None:
        config = cors("cors_allow_origins = *")
        p = passage(
            route_from(KEYS),
            b"OPTIONS",
            [
                (b"origin", b"https://any.example"),
                (b"access-control-request-method", b"PATCH"),
                (b"access-control-request-headers", b"x-one, X-Two"),
            ],
        )
        reply = run(CorsStep(config), p)
        assert reply is not None
        headers = dict(p.answer(reply).headers)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "*")
        self.assertEqual(headers["Access-Control-Allow-Methods"], "PATCH")
        self.assertEqual(headers["Access-Control-Allow-Headers"], "x-one, x-two")
        self.assertNotIn("Access-Control-Allow-Credentials", headers)


class ActualRequestTests(SynchronousTestCase):
    def test_allowed_origin(self) -> None:
        p = passage(route_from(KEYS), b"POST", [(b"origin", b"https://x.y.example.org")])
        self.assertIsNone(run(CorsStep(cors()), p))
        self.assertEqual(
            p.answer_headers,
            [
                ("Vary", "Origin"),
                ("Access-Control-Allow-Origin", "https://x.y.example.org"),
                ("Access-Control-Expose-Headers", "x-request-id"),
                ("Access-Control-Allow-Credentials", "true"),
            ],
        )
        self.assertIn("access-control-allow-origin", p.replaced)

    def test_other_origin(self) -> None:
        """
        No grant, and the function's own CORS headers are dropped all the same.
        """
        p = passage(route_from(KEYS), b"GET", [(b"origin", b"https://evil.example.net")])
        self.assertIsNone(run(CorsStep(cors()), p))
        self.assertEqual(p.answer_headers, [("Vary", "Origin")])
        self.assertIn("access-control-allow-credentials", p.replaced)

    def test_no_origin(self) -> None:
        p = passage(route_from(KEYS))
        self.assertIsNone(run(CorsStep(cors()), p))
        self.assertEqual(p.answer_headers, [])

    def test_options_without_request_method_is_no_preflight(self) -> None:
        p = passage(route_from(KEYS), b"OPTIONS", [(b"origin", b"https://app.example.com")])
        self.assertIsNone(run(CorsStep(cors()), p))
        self.assertIn(("Access-Control-Allow-Origin", "https://app.example.com"), p.answer_headers)

    def test_star_without_credentials(self) -> None:
        p = passage(route_from(KEYS), b"GET", [(b"origin", b"https://any.example")])
        run(CorsStep(cors("cors_allow_origins = *")), p)
        self.assertEqual(
            p.answer_headers, [("Vary", "Origin"), ("Access-Control-Allow-Origin", "*")]
        )

    def test_describe(self) -> None:
        self.assertEqual(
            CorsStep(cors()).describe(),
            "cors origins http://localhost:3000 https://app.example.com https://*.example.org,"
            " methods GET POST, headers authorization content-type, expose x-request-id,"
            " max-age 600s, credentials",
        )


def test_parse_config_keeps_cors_per_route() -> None:
    config = parse_config(
        "[route:/a]\nsingle = f\naws_region = us-east-1\ncors_allow_origins = *\n"
        "[route:/b]\nsingle = f\naws_region = us-east-1\n",
        "gw.ini",
        environ={},
    )
    assert config.routes[0].cors is not None
    assert config.routes[1].cors is None
