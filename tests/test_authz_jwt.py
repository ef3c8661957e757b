"""
The JWT authorizer against a JWKS and discovery server on loopback whose keys rotate.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent

from twisted_lambdagw.core.authorizers import IdentitySource, JWTAuthorizerConfig
from twisted_lambdagw.core.errors import AuthorizerFailed, Forbidden, GatewayError, Unauthorized
from twisted_lambdagw.policies.authorizers.jwks import REFETCH_INTERVAL, REFRESH_INTERVAL, JWKSource
from twisted_lambdagw.policies.authorizers.jwt import JWTAuthorizer
from twisted_lambdagw.policies.authorizers.tokens import TokenCache
from twisted_lambdagw.policies.chain import Passage

from .idp_fixtures import ALGORITHM_KEYS, IdP, passage, serve_idp
from .loopback import real_reactor

ALL = tuple(ALGORITHM_KEYS)
AUTHORIZATION = IdentitySource("header", "authorization", "$request.header.Authorization")


class Setup:
    def __init__(self, test: TestCase, *, discovery: bool = True, **config: Any) -> None:
        self.idp: IdP = serve_idp(test)
        self.clock = Clock()
        self.clock.advance(time.time())
        self.idp.now = self.clock.seconds
        self.fetched: list[str] = []
        self.waiting: list[Deferred[str]] = []
        scopes = config.pop("scopes", ())
        self.config = JWTAuthorizerConfig(
            name="users",
            issuer=self.idp.issuer,
            audience=config.pop("audience", ("web-app", "mobile-app")),
            identity_source=config.pop("identity_source", AUTHORIZATION),
            algorithms=config.pop("algorithms", ALL),
            jwks_uri=None if discovery else self.idp.issuer + "/jwks",
            **config,
        )
        client = HTTPClient(Agent(real_reactor()))
        self.keys = JWKSource(
            client, self.clock, self.idp.issuer, self.config.jwks_uri, on_fetch=self._fetched
        )
        self.tokens = TokenCache(self.clock)
        """Wired as the gateway wires it: every test runs with the cache of verified tokens."""
        self.keys.on_rotate(self.tokens.forget_keys)
        self.step = JWTAuthorizer(self.config, self.keys, self.clock, scopes, self.tokens)

    def _fetched(self, outcome: str) -> None:
        self.fetched.append(outcome)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(outcome)

    def next_fetch(self) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.waiting.append(d)
        return d

    async def start(self) -> None:
        fetch = self.next_fetch()
        self.keys.start()
        await fetch

    async def run(self, token: str | None, **headers: str) -> Passage:
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        p = passage(headers)
        await Deferred.fromCoroutine(self.step(p))
        return p

    async def refused(self, test: TestCase, token: str | None, kind: type[GatewayError]) -> Any:
        p = passage({"Authorization": f"Bearer {token}"} if token is not None else {})
        with test.assertRaises(kind) as raised:
            await Deferred.fromCoroutine(self.step(p))
        test.assertIsNone(p.principal)
        return raised.exception, p


class AcceptTests(TestCase):
    timeout = 20

    async def test_every_algorithm(self) -> None:
        """
        RS256/384/512, PS256, ES256/384 and EdDSA tokens verify, by kid, and fill the principal.
        """
        s = Setup(self)
        await s.start()
        for algorithm in ALL:
            p = await s.run(s.idp.token({"scope": "orders:read profile"}, algorithm))
            assert p.principal is not None
            self.assertEqual(p.principal.user, "alice")
            self.assertEqual(p.principal.source, "jwt")
            self.assertEqual(p.principal.scopes, ("orders:read", "profile"))
            self.assertEqual(p.principal.claims and p.principal.claims["iss"], s.idp.issuer)
            self.assertEqual(p.exchange.authorizer, "allowed")
            self.assertEqual(p.exchange.user, "alice")
        self.assertEqual(s.idp.fetches, ["/.well-known/openid-configuration", "/jwks"])

    async def test_bare_token_and_explicit_jwks_uri(self) -> None:
        s = Setup(self, discovery=False)
        await s.start()
        p = await s.run(None, Authorization=s.idp.token())
        self.assertEqual(p.exchange.user, "alice")
        self.assertEqual(s.idp.fetches, ["/jwks"])

    async def test_query_identity_source(self) -> None:
        source = IdentitySource("querystring", "token", "$request.querystring.token")
        s = Setup(self, identity_source=source)
        await s.start()
        p = passage(uri=f"/api/x?a=1&token={s.idp.token()}")
        await Deferred.fromCoroutine(s.step(p))
        self.assertEqual(p.exchange.user, "alice")

    async def test_client_id_when_no_aud(self) -> None:
        """
        Access tokens without aud (Cognito's) are checked by client_id.
        """
        s = Setup(self)
        await s.start()
        p = await s.run(s.idp.token({"aud": None, "client_id": "mobile-app", "sub": None}))
        self.assertEqual(p.exchange.user, "mobile-app")
        await s.refused(self, s.idp.token({"aud": None, "client_id": "other"}), Unauthorized)

    async def test_scp_list_and_scopes(self) -> None:
        s = Setup(self, scopes=("orders:read", "orders:write"))
        await s.start()
        p = await s.run(s.idp.token({"scp": ["orders:write"]}))
        assert p.principal is not None
        self.assertEqual(p.principal.scopes, ("orders:write",))
        error, refused = await s.refused(self, s.idp.token({"scope": "profile"}), Forbidden)
        self.assertEqual(error.status, 403)
        self.assertIn(
            'error="insufficient_scope"', dict(error.response_headers())["WWW-Authenticate"]
        )
        self.assertEqual(refused.exchange.authorizer, "denied")
        await s.refused(self, s.idp.token(), Forbidden)

    async def test_clock_skew(self) -> None:
        s = Setup(self, clock_skew=30.0)
        await s.start()
        now = s.clock.seconds()
        await s.run(s.idp.token({"exp": int(now) - 10}))
        await s.run(s.idp.token({"nbf": int(now) + 10, "iat": int(now) + 10}))
        await s.refused(self, s.idp.token({"exp": int(now) - 40}), Unauthorized)


class RefuseTests(TestCase):
    timeout = 20

    async def refused_with(self, s: Setup, token: str | None, description: str) -> None:
        error, p = await s.refused(self, token, Unauthorized)
        challenge = dict(error.response_headers())["WWW-Authenticate"]
        self.assertEqual(
            challenge, f'Bearer error="invalid_token", error_description="{description}"'
        )
        self.assertEqual(p.exchange.authorizer, "invalid")

    async def test_no_token(self) -> None:
        s = Setup(self)
        await s.start()
        error, p = await s.refused(self, None, Unauthorized)
        self.assertEqual(dict(error.response_headers())["WWW-Authenticate"], "Bearer")
        self.assertEqual(p.exchange.authorizer, "missing")

    async def test_alg_none(self) -> None:
        s = Setup(self)
        await s.start()
        unsigned = jwt.encode({"iss": s.idp.issuer, "aud": "web-app"}, "", algorithm="none")
        await self.refused_with(s, unsigned, "the algorithm none is not allowed")

    async def test_hs256_signed_with_the_public_key(self) -> None:
        """
        The confusion attack: HS256 "signed" with the issuer's public key is refused.
        """
        s = Setup(self)
        await s.start()
        public = s.idp.keys[s.idp.kid("RS256")].public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = {"iss": s.idp.issuer, "aud": "web-app", "sub": "mallory", "exp": 2**40}
        forged = _hmac_token(claims, pem, s.idp.kid("RS256"))
        await self.refused_with(s, forged, "the algorithm HS256 is not allowed")
        # Even with HS256 slipped into the allowed list, no key is an HMAC key.
        object.__setattr__(s.step, "_algorithms", frozenset({*ALL, "HS256"}))
        await self.refused_with(s, forged, "the token's algorithm does not match its key")

    async def test_bad_claims(self) -> None:
        s = Setup(self)
        await s.start()
        now = int(s.clock.seconds())
        cases: list[tuple[dict[str, Any], str]] = [
            ({"iss": "https://evil.example"}, "the issuer is not trusted"),
            ({"aud": "other-app"}, "the token is not for this audience"),
            ({"exp": now - 1}, "the token has expired"),
            ({"exp": None}, "the token has no expiry"),
            ({"nbf": now + 60}, "the token is not valid yet"),
            ({"iat": now + 60}, "the token was issued in the future"),
            ({"exp": "soon"}, "the exp claim is not a number"),
        ]
        for claims, description in cases:
            await self.refused_with(s, s.idp.token(claims), description)

    async def test_bad_signature_and_garbage(self) -> None:
        s = Setup(self)
        await s.start()
        token = s.idp.token()
        head, _, signature = token.split(".")
        other = s.idp.token({"sub": "mallory"}).split(".")[1]
        await self.refused_with(
            s, f"{head}.{other}.{signature}", "the token's signature does not verify"
        )
        await self.refused_with(s, "not-a-token", "the token is not a JWS compact serialization")

    async def test_key_of_another_type(self) -> None:
        """
        An ES256 token naming an RSA key's kid does not verify.
        """
        s = Setup(self)
        await s.start()
        token = s.idp.token(algorithm="ES256", kid=s.idp.kid("RS256"))
        await self.refused_with(s, token, "the token's algorithm does not match its key")
        token = s.idp.token(algorithm="ES256", kid=s.idp.kid("ES384"))
        await self.refused_with(s, token, "the token's algorithm does not match its key")

    async def test_two_authorization_headers(self) -> None:
        s = Setup(self)
        await s.start()
        p = passage({"Authorization": "Bearer a"})
        p.request.requestHeaders.addRawHeader(b"authorization", b"Bearer b")
        with self.assertRaises(Unauthorized):
            await Deferred.fromCoroutine(s.step(p))


class RotationTests(TestCase):
    timeout = 20

    async def test_unknown_kid_fetches_at_most_once_a_minute(self) -> None:
        s = Setup(self, discovery=False)
        await s.start()
        old = s.idp.token()
        s.idp.rotate()
        new = s.idp.token()
        p = await s.run(new)
        self.assertEqual(p.exchange.user, "alice")
        self.assertEqual(s.idp.fetches, ["/jwks", "/jwks"])
        # The old key is gone from the JWKS now, and an unknown kid fetches no more for a minute.
        await s.refused(self, old, Unauthorized)
        s.idp.rotate()
        await s.refused(self, s.idp.token(), Unauthorized)
        self.assertEqual(s.idp.fetches, ["/jwks", "/jwks"])
        s.clock.advance(REFETCH_INTERVAL)
        await s.run(s.idp.token())
        self.assertEqual(len(s.idp.fetches), 3)

    async def test_background_refresh(self) -> None:
        """
        Keys are refreshed on the clock: a request after a rotation waits on nothing.
        """
        s = Setup(self, discovery=False)
        await s.start()
        s.idp.rotate()
        fetch = s.next_fetch()
        s.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(await fetch, "ok")
        self.assertEqual(len(s.idp.fetches), 2)
        await s.run(s.idp.token())
        self.assertEqual(len(s.idp.fetches), 2)
        s.keys.stop()
        self.assertEqual(s.clock.getDelayedCalls(), [])

    async def test_idp_down_with_keys_cached(self) -> None:
        s = Setup(self)
        await s.start()
        s.idp.down = True
        fetch = s.next_fetch()
        s.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(await fetch, "failed")
        p = await s.run(s.idp.token())
        self.assertEqual(p.exchange.user, "alice")
        # An unknown kid, with the IdP down: a bad token, not a failure.
        await s.refused(self, s.idp.token(kid="rotated-away"), Unauthorized)
        s.keys.stop()

    async def test_no_keys_ever(self) -> None:
        s = Setup(self)
        s.idp.down = True
        await s.start()
        self.assertEqual(s.fetched, ["failed"])
        error, p = await s.refused(self, s.idp.token(), AuthorizerFailed)
        self.assertEqual(error.status, 500)
        self.assertEqual(error.message, "authorizer failed")
        self.assertEqual(p.exchange.authorizer, "failed")
        s.keys.stop()

    async def test_discovery_issuer_must_match(self) -> None:
        s = Setup(self)
        real = s.idp.issuer
        s.idp.issuer = real + "/other"
        fetch = s.next_fetch()
        s.keys.start()
        self.assertEqual(await fetch, "failed")
        s.idp.issuer = real
        s.keys.stop()


def _hmac_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """
    An HS256 token made by hand: PyJWT itself refuses a PEM key as an HMAC secret.
    """
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"
