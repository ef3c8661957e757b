"""
The JWT authorizer against a real OpenID Connect provider on loopback.

C{tests/node/oidc/serve.mjs} runs C{oidc-provider} (OpenID Certified; its
version pinned by C{tests/node/oidc/package-lock.json}, installed with
C{npm ci --prefix tests/node/oidc}), which issues JWT access tokens by the
client-credentials grant for two resource indicators, one signed RS256 and
one ES256.  The gateway finds its keys by discovery: the discovery
document, the JWKS and the tokens' shapes are that IdP's, not ours.

Without node or the packages these tests skip, and fail when C{CI=true}.
"""

from __future__ import annotations

import base64
import json
import select
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from twisted_lambdagw.core.config_reader import parse_config

from .external import missing
from .idp_fixtures import listen_gateway
from .loopback import real_reactor

NODE_DIR = Path(__file__).parent / "node" / "oidc"
FUNCTIONS = Path(__file__).parent / "functions"
CLIENT_ID = "orders-batch"
CLIENT_SECRET = "a-client-secret-made-for-these-tests-0123456789"
RS256_API = "https://orders.example.test/rs256"
ES256_API = "https://orders.example.test/es256"
START_TIMEOUT = 30.0


def node() -> str:
    """
    The node executable, once oidc-provider is installed; else skip (or fail, under CI).
    """
    executable = shutil.which("node")
    problem = None
    if executable is None:
        problem = "node is not installed"
    elif not (NODE_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        problem = "oidc-provider is missing: npm ci --prefix tests/node/oidc"
    if problem is not None:
        missing(problem)
    assert executable is not None
    return executable


def start_provider(case: TestCase) -> str:
    """
    Start C{serve.mjs} for the length of C{case} and return its issuer.
    """
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by a cleanup
    case.addCleanup(errors.close)
    process = subprocess.Popen(
        [node(), str(NODE_DIR / "serve.mjs"), CLIENT_ID, CLIENT_SECRET],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
    )

    def stop() -> None:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    case.addCleanup(stop)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if not line:
        errors.seek(0)
        raise AssertionError(f"oidc-provider did not start: {errors.read().decode()[-2000:]}")
    issuer = json.loads(line)["issuer"]
    assert isinstance(issuer, str)
    return issuer


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims, dict)
    return claims


def header_of(token: str) -> dict[str, Any]:
    header = token.split(".")[0]
    value = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    assert isinstance(value, dict)
    return value


def tampered(token: str, **claims: Any) -> str:
    """
    C{token} with C{claims} changed and its signature kept: a forgery.
    """
    header, _, signature = token.split(".")
    body = json.dumps({**claims_of(token), **claims}).encode()
    payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


class OpenIDProviderTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.issuer = start_provider(self)
        reactor = real_reactor()
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))

    async def token(self, resource: str, scope: str) -> str:
        """
        An access token from the provider's token endpoint, by the client-credentials grant.
        """
        response = await self.http.post(
            self.issuer + "/token",
            data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        body = json.loads(await response.content())
        self.assertEqual(response.code, 200, body)
        self.assertEqual(body["token_type"], "Bearer")
        token = body["access_token"]
        assert isinstance(token, str)
        return token

    def serve(self, audience: str = f"{RS256_API} {ES256_API}") -> str:
        """
        A gateway on loopback trusting the provider's tokens for C{audience}.
        """
        config = parse_config(
            f"[local]\nfunctions_dir = {FUNCTIONS}\n"
            f"[authorizer:orders]\ntype = jwt\nissuer = {self.issuer}\n"
            f"audience = {audience}\nalgorithms = RS256 ES256\n"
            "[route:/api/]\nbackend = local\nformat = apigw-v2\nauth = orders\n"
            "scopes = orders:read\n"
            "[route:/write/]\nbackend = local\nformat = apigw-v2\nauth = orders\n"
            "scopes = orders:write\nsingle = probe\n",
            "gw.ini",
            environ={},
        )
        _, base = listen_gateway(self, config)
        return base

    async def call(self, url: str, token: str) -> tuple[int, Any, Headers]:
        response = await self.http.get(
            url, headers=Headers({b"Authorization": [f"Bearer {token}".encode()]})
        )
        return response.code, json.loads(await response.content()), response.headers

    async def test_client_credentials_tokens(self) -> None:
        """
        Tokens the provider signed RS256 and ES256 let the client in, and the
        function sees their claims; a forged one is a 401, a missing scope a 403.
        """
        base = self.serve()
        for resource, algorithm in ((RS256_API, "RS256"), (ES256_API, "ES256")):
            token = await self.token(resource, "orders:read")
            self.assertEqual(header_of(token)["alg"], algorithm)
            code, body, _ = await self.call(base + "/api/probe", token)
            self.assertEqual(code, 200, body)
            event = body["event"]
            authorizer = event["requestContext"]["authorizer"]["jwt"]
            claims = authorizer["claims"]
            self.assertEqual(
                (claims["iss"], claims["aud"], claims["client_id"]),
                (self.issuer, resource, CLIENT_ID),
            )
            self.assertEqual(claims["jti"], claims_of(token)["jti"])
            self.assertEqual(authorizer["scopes"], ["orders:read"])
            self.assertEqual(event["headers"]["x-authenticated-user"], CLIENT_ID)

        code, body, headers = await self.call(
            base + "/write/x", tampered(token, scope="orders:read orders:write")
        )
        self.assertEqual((code, body["error"]), (401, "invalid token"))
        [challenge] = headers.getRawHeaders("www-authenticate", [])
        self.assertIn('error="invalid_token"', challenge)

        code, body, headers = await self.call(base + "/write/x", token)
        self.assertEqual((code, body["error"]), (403, "insufficient scope"))
        [challenge] = headers.getRawHeaders("www-authenticate", [])
        self.assertIn('error="insufficient_scope", scope="orders:write"', challenge)

        writer = await self.token(RS256_API, "orders:read orders:write")
        code, body, _ = await self.call(base + "/write/x", writer)
        self.assertEqual(code, 200, body)
        self.assertEqual(
            body["event"]["requestContext"]["authorizer"]["jwt"]["scopes"],
            ["orders:read", "orders:write"],
        )

    async def test_other_audience_refused(self) -> None:
        """
        A token the same provider issued for another resource is a 401.
        """
        base = self.serve(audience=RS256_API)
        other = await self.token(ES256_API, "orders:read")
        code, body, _ = await self.call(base + "/api/probe", other)
        self.assertEqual((code, body["error"]), (401, "invalid token"))
        mine = await self.token(RS256_API, "orders:read")
        code, body, _ = await self.call(base + "/api/probe", mine)
        self.assertEqual(code, 200, body)
