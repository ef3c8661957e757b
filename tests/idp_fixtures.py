"""
A small OpenID provider for tests: keys made here, discovery and JWKS served on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel

from twisted_lambdagw.core.config import Config
from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.core.proxies import Origin
from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.policies.chain import Passage

from .loopback import real_reactor

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

ALGORITHM_KEYS = {
    "RS256": "rsa", "RS384": "rsa", "RS512": "rsa", "PS256": "rsa",
    "ES256": "p256", "ES384": "p384", "EdDSA": "ed25519",
}  # fmt: skip


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        document = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        document = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    else:
        document = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
    document["kid"] = kid
    document["use"] = "sig"
    return dict(document)


class IdP(Resource):
    """
    Discovery at /.well-known/openid-configuration and keys at /jwks, from a set that rotates.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0
        self.keys: dict[str, PrivateKey] = {}
        self.fetches: list[str] = []
        self.down = False
        self.issuer = ""
        self.now: Callable[[], float] = time.time
        """Where tokens' times come from by default: the authorizer's clock, in tests."""
        self.rotate()

    def rotate(self) -> None:
        """
        Replace every key with new ones (new kids), as an IdP's rotation does.
        """
        self.generation += 1
        kinds = {"rsa", "p256", "p384", "ed25519"}
        self.keys = {f"{kind}-{self.generation}": new_key(kind) for kind in sorted(kinds)}

    def kid(self, algorithm: str) -> str:
        return f"{ALGORITHM_KEYS[algorithm]}-{self.generation}"

    def token(
        self,
        claims: dict[str, Any] | None = None,
        algorithm: str = "RS256",
        now: float | None = None,
        **headers: Any,
    ) -> str:
        """
        A signed token: iss, aud web-app, sub alice, a 5-minute life, unless C{claims} differ.
        """
        now = self.now() if now is None else now
        body = {"iss": self.issuer, "aud": "web-app", "sub": "alice", "iat": int(now),
                "exp": int(now) + 300, **(claims or {})}  # fmt: skip
        body = {k: v for k, v in body.items() if v is not None}
        kid = headers.pop("kid", self.kid(algorithm))
        key = self.keys[self.kid(algorithm)]
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid, **headers})

    def render_GET(self, request: Request) -> bytes:
        path = request.path.decode()
        self.fetches.append(path)
        if self.down:
            request.setResponseCode(503)
            return b"down"
        request.setHeader(b"content-type", b"application/json")
        if path == "/.well-known/openid-configuration":
            return json.dumps({"issuer": self.issuer, "jwks_uri": self.issuer + "/jwks"}).encode()
        if path == "/jwks":
            keys = [public_jwk(key, kid) for kid, key in self.keys.items()]
            return json.dumps({"keys": keys}).encode()
        request.setResponseCode(404)
        return b"{}"


def serve_idp(test: Any) -> IdP:
    """
    Start an L{IdP} on 127.0.0.1 for the length of C{test}.
    """
    idp = IdP()
    port = real_reactor().listenTCP(0, Site(idp), interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    idp.issuer = f"http://127.0.0.1:{port.getHost().port}"
    return idp


def listen_gateway(test: Any, config: Config) -> tuple[Gateway, str]:
    """
    A started L{Gateway} for C{config} on 127.0.0.1 for the length of C{test}, and its URL.
    """
    reactor = real_reactor()
    gateway = Gateway(config, reactor)
    gateway.service.startService()
    test.addCleanup(gateway.service.stopService)
    port = reactor.listenTCP(0, gateway.site(), interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return gateway, f"http://127.0.0.1:{port.getHost().port}"


def passage(
    headers: dict[str, str] | None = None, uri: str = "/api/orders", method: str = "GET"
) -> Passage:
    """
    A request at the authorize stage, as the chain hands it to a step.
    """
    from twisted_lambdagw.core.config import RouteConfig

    request = Request(DummyChannel())
    request.method = method.encode()
    request.uri = uri.encode()
    request.path = uri.partition("?")[0].encode()
    request.clientproto = b"HTTP/1.1"
    for name, value in (headers or {}).items():
        request.requestHeaders.addRawHeader(name.encode(), value.encode())
    exchange = Exchange("req-1", 0.0, "127.0.0.1", method, request.path.decode())
    path = request.path.decode()
    return Passage(
        request=request,
        request_id="req-1",
        route=RouteConfig(prefix="/api/"),
        origin=Origin("127.0.0.1", "http", 8080),
        raw_path=path,
        path=path,
        exchange=exchange,
    )


def fired(d: Deferred[Any]) -> Deferred[Any]:
    return d
