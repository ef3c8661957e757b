"""
CPU per request with an authorizer, against an open route, in one run.

    python bench/authorizers.py                  # 3000 requests per case
    python bench/authorizers.py --requests 10000

Every case runs in this one process on the real GatewayResource, driven by
treq's StubTreq (no sockets), with an in-memory function that answers at
once, so what differs between the cases is the authorizer alone:

- ``open``: ``auth = none``;
- ``jwt-rs256`` / ``jwt-es256``: a JWT authorizer, keys already fetched, the
  token verified once and then found in its cache of verified tokens (a
  client sends the same token until it expires);
- ``rs256-verify`` / ``es256-verify``: the same without the cache: every
  request's signature is checked;
- ``lambda-hit`` / ``lambda-miss``: a Lambda authorizer (in-memory function)
  whose answer is cached (``result_ttl = 5m``), or never (``result_ttl = 0``).

CPU time is this process's (``time.process_time``), client side included,
so the ratios understate the gateway's own share of the difference.  The
cases are interleaved in rounds so a neighbour's load hits them all alike,
each round starting with another case, and each case's best round is
reported.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jwt
import treq
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from twisted_lambdagw.core.authorizers import (
    IdentitySource,
    JWTAuthorizerConfig,
    LambdaAuthorizerConfig,
)
from twisted_lambdagw.core.config import RouteConfig
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult
from twisted_lambdagw.policies.authorizers.jwks import JWKSource, KeySet
from twisted_lambdagw.policies.authorizers.jwt import JWTAuthorizer
from twisted_lambdagw.policies.authorizers.lambda_ import LambdaAuthorizer
from twisted_lambdagw.policies.authorizers.tokens import TokenCache
from twisted_lambdagw.policies.build import admit_steps
from twisted_lambdagw.policies.chain import Chain
from twisted_lambdagw.policies.inflight import InFlight
from twisted_lambdagw.server.resource import Binding, GatewayResource

ISSUER = "https://login.example.test"
AUTHORIZATION = IdentitySource("header", "authorization", "$request.header.Authorization")
REPLY = json.dumps({"statusCode": 200, "body": "ok"}).encode()
ALLOW = json.dumps({"isAuthorized": True, "context": {"tenant": "acme"}}).encode()


class Answers:
    """
    A function that answers at once: the route's reply, or the authorizer's.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        return InvokeResult(self.payload)


def jwt_step(clock: Clock, algorithm: str, cache: bool = True) -> tuple[JWTAuthorizer, str]:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    algo: Any = jwt.algorithms.RSAAlgorithm if algorithm == "RS256" else jwt.algorithms.ECAlgorithm
    public = json.loads(algo.to_jwk(key.public_key()))
    public["kid"] = "k1"
    config = JWTAuthorizerConfig("users", ISSUER, ("web-app",), AUTHORIZATION, (algorithm,))
    keys = JWKSource(None, clock, ISSUER)  # type: ignore[arg-type]
    keys.keys = KeySet.parse({"keys": [public]})
    claims = {"iss": ISSUER, "aud": "web-app", "sub": "alice", "exp": 2**40, "scope": "read"}
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "k1"})
    tokens = TokenCache(clock) if cache else None
    return JWTAuthorizer(config, keys, clock, tokens=tokens), token


def lambda_step(clock: Clock, ttl: float) -> LambdaAuthorizer:
    config = LambdaAuthorizerConfig(
        "custom", "authorizer", (AUTHORIZATION,), backend="local", result_ttl=ttl
    )
    return LambdaAuthorizer(config, Answers(ALLOW), clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    clock = Clock()
    clock.advance(time.time())
    cases: dict[str, tuple[Any, str | None]] = {
        "open": (None, None),
        "jwt-rs256": jwt_step(clock, "RS256"),
        "jwt-es256": jwt_step(clock, "ES256"),
        "rs256-verify": jwt_step(clock, "RS256", cache=False),
        "es256-verify": jwt_step(clock, "ES256", cache=False),
        "lambda-hit": (lambda_step(clock, 300.0), "secret"),
        "lambda-miss": (lambda_step(clock, 0.0), "secret"),
    }
    in_flight = InFlight()
    bindings = [
        Binding(
            RouteConfig(prefix=f"/{name}/", backend="local", format="apigw-v2", single="fn"),
            Answers(REPLY),
            get_format("apigw-v2"),
            chain=Chain([*([step] if step is not None else []), *admit_steps(in_flight)]),
        )
        for name, (step, _) in cases.items()
    ]
    resource = GatewayResource(bindings, clock, in_flight=in_flight)
    client: Any = StubTreq(resource)  # its methods are made at run time
    spent: dict[str, list[float]] = {name: [] for name in cases}

    def run(name: str, count: int) -> None:
        token = cases[name][1]
        headers = {"Authorization": [f"Bearer {token}"]} if token else {}
        for _ in range(count):
            d: Deferred[Any] = client.get(f"http://gw.test/{name}/x", headers=headers)
            response = _result(d)
            if response.code != 200:
                raise SystemExit(f"{name}: status {response.code}")
            _result(treq.content(response))

    for name in cases:
        run(name, 200)  # warm-up
    names = list(cases)
    for round_ in range(args.rounds):
        # Each round starts with another case: no case always runs first.
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.process_time()
            run(name, args.requests)
            spent[name].append(time.process_time() - start)
    # The best round of each case: a neighbour's load only ever adds time.
    per = {name: min(spent[name]) / args.requests * 1e6 for name in cases}
    for name in cases:
        print(f"{name:12s} {per[name]:8.1f} us/request  {per[name] / per['open']:.2f}x open")
    print(f"lambda cache hit/miss: {per['lambda-hit'] / per['lambda-miss']:.2f}")


def _result(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        raise SystemExit("a request did not finish at once")
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


if __name__ == "__main__":
    main()
