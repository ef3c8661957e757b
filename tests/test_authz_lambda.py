"""
The Lambda authorizer: its events, its answers, its cache, and a real local function.
"""

from __future__ import annotations

import json
import os
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from twisted_lambdagw.core.authorizers import IdentitySource, LambdaAuthorizerConfig
from twisted_lambdagw.core.config import LocalConfig
from twisted_lambdagw.core.errors import AuthorizerFailed, Forbidden, GatewayError, Unauthorized
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult
from twisted_lambdagw.invokers.local import LocalInvoker, LocalReactor
from twisted_lambdagw.policies.authorizers.lambda_ import LambdaAuthorizer
from twisted_lambdagw.policies.chain import Passage

from .idp_fixtures import passage
from .loopback import real_reactor

FUNCTIONS = os.path.join(os.path.dirname(__file__), "functions")
AUTHORIZATION = IdentitySource("header", "authorization", "$request.header.Authorization")
KEY = IdentitySource("querystring", "key", "$request.querystring.key")


def authorizer_config(**fields: Any) -> LambdaAuthorizerConfig:
    backend = fields.pop("backend", "local")
    return LambdaAuthorizerConfig(
        name="custom",
        function="authorizer",
        identity_sources=fields.pop("identity_sources", (AUTHORIZATION,)),
        backend=backend,
        **fields,
    )


class Scripted:
    """
    An invoker answering from a script, keeping every call: for the cases a function cannot make.
    """

    def __init__(self, *answers: bytes | GatewayError | Deferred[InvokeResult]) -> None:
        self.answers = list(answers)
        self.calls: list[InvokeCall] = []

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, GatewayError):
            raise answer
        if isinstance(answer, Deferred):
            return await answer
        return InvokeResult(answer)


def simple(authorized: bool = True, **context: object) -> bytes:
    return json.dumps({"isAuthorized": authorized, "context": context}).encode()


def policy(effect: str, resource: str, action: object = "execute-api:Invoke") -> bytes:
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    return json.dumps(
        {"principalId": "bob", "policyDocument": {"Statement": [statement]}, "context": {"a": 1}}
    ).encode()


class EventTests(TestCase):
    async def ask(self, step: LambdaAuthorizer, p: Passage) -> None:
        await Deferred.fromCoroutine(step(p))

    async def test_v2_event_and_simple_answer(self) -> None:
        invoker = Scripted(simple(True, tenant="acme", principalId="bob"))
        step = LambdaAuthorizer(authorizer_config(), invoker, Clock())
        p = passage(
            {"Authorization": "token-1", "Cookie": "a=1; b=2", "X-Thing": "x"},
            uri="/api/orders?x=1&x=2&y=3",
            method="POST",
        )
        await self.ask(step, p)
        (call,) = invoker.calls
        self.assertEqual((call.function, call.timeout), ("authorizer", 10.0))
        event = json.loads(call.payload)
        self.assertEqual(event["version"], "2.0")
        self.assertEqual(event["type"], "REQUEST")
        self.assertEqual(
            event["routeArn"],
            "arn:aws:execute-api:us-east-1:000000000000:lambdagw/$default/POST/api/orders",
        )
        self.assertEqual(event["identitySource"], ["token-1"])
        self.assertEqual(event["cookies"], ["a=1", "b=2"])
        self.assertEqual(event["headers"]["x-thing"], "x")
        self.assertEqual(event["queryStringParameters"], {"x": "1,2", "y": "3"})
        self.assertEqual(event["rawQueryString"], "x=1&x=2&y=3")
        self.assertEqual(event["requestContext"]["http"]["method"], "POST")
        self.assertEqual(event["requestContext"]["requestId"], "req-1")
        self.assertNotIn("body", event)
        assert p.principal is not None
        self.assertEqual(p.principal.context, {"tenant": "acme", "principalId": "bob"})
        self.assertEqual((p.principal.user, p.exchange.user), ("bob", "bob"))
        self.assertEqual(p.exchange.authorizer, "allowed")

    async def test_v1_event_and_policy(self) -> None:
        arn = "arn:aws:execute-api:us-east-1:000000000000:lambdagw/$default/GET/api/*"
        invoker = Scripted(policy("Allow", arn))
        config = authorizer_config(
            payload_format="1.0", simple_responses=False, identity_sources=(AUTHORIZATION, KEY)
        )
        step = LambdaAuthorizer(config, invoker, Clock())
        p = passage({"Authorization": "t"}, uri="/api/orders?key=k1")
        await self.ask(step, p)
        event = json.loads(invoker.calls[0].payload)
        self.assertEqual(event["version"], "1.0")
        self.assertEqual(event["identitySource"], "t,k1")
        self.assertEqual(event["authorizationToken"], "t,k1")
        self.assertTrue(event["methodArn"].endswith("/$default/GET/api/orders"))
        self.assertEqual(event["httpMethod"], "GET")
        assert p.principal is not None
        self.assertEqual((p.principal.user, p.principal.context), ("bob", {"a": 1}))

    async def test_refusals_invoke_nothing_or_fail(self) -> None:
        arn_other = "arn:aws:execute-api:us-east-1:000000000000:lambdagw/$default/GET/admin/*"
        any_arn = "arn:aws:execute-api:*"
        cases: list[tuple[bytes | GatewayError, type[GatewayError], str, bool]] = [
            (simple(False), Forbidden, "denied", False),
            (policy("Allow", arn_other), Forbidden, "denied", True),
            (policy("Allow", any_arn, action="s3:GetObject"), Forbidden, "denied", True),
            (b"not json", AuthorizerFailed, "failed", False),
            (b'{"isAuthorized": "yes"}', AuthorizerFailed, "failed", False),
            (b'{"principalId": 7}', AuthorizerFailed, "failed", True),
            (GatewayError("boom"), AuthorizerFailed, "failed", False),
        ]
        for answer, kind, outcome, iam in cases:
            config = authorizer_config(
                payload_format="1.0" if iam else "2.0", simple_responses=not iam
            )
            step = LambdaAuthorizer(config, Scripted(answer), Clock())
            p = passage({"Authorization": "t"})
            with self.assertRaises(kind):
                await self.ask(step, p)
            self.assertEqual(p.exchange.authorizer, outcome, answer)
            self.assertIsNone(p.principal)

    async def test_deny_wins(self) -> None:
        arn = "arn:aws:execute-api:*"
        both = json.loads(policy("Allow", arn))
        both["policyDocument"]["Statement"].append(
            {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": arn}
        )
        config = authorizer_config(payload_format="1.0", simple_responses=False)
        step = LambdaAuthorizer(config, Scripted(json.dumps(both).encode()), Clock())
        with self.assertRaises(Forbidden):
            await self.ask(step, passage({"Authorization": "t"}))

    async def test_function_error(self) -> None:
        answer = InvokeResult(b'{"errorMessage": "x"}', function_error="Unhandled")
        invoker = Scripted(Deferred.fromCoroutine(_value(answer)))
        step = LambdaAuthorizer(authorizer_config(), invoker, Clock())
        with self.assertRaises(AuthorizerFailed):
            await self.ask(step, passage({"Authorization": "t"}))

    async def test_missing_identity_invokes_nothing(self) -> None:
        invoker = Scripted()
        config = authorizer_config(identity_sources=(AUTHORIZATION, KEY))
        step = LambdaAuthorizer(config, invoker, Clock())
        for headers, uri in [({}, "/api/x?key=1"), ({"Authorization": "t"}, "/api/x"),
                             ({"Authorization": "t"}, "/api/x?key=")]:  # fmt: skip
            p = passage(headers, uri=uri)
            with self.assertRaises(Unauthorized):
                await self.ask(step, p)
            self.assertEqual(p.exchange.authorizer, "missing")
        self.assertEqual(invoker.calls, [])

    async def test_timeout(self) -> None:
        clock = Clock()
        never: Deferred[InvokeResult] = Deferred()
        step = LambdaAuthorizer(authorizer_config(timeout=3.0), Scripted(never), clock)
        asking = Deferred.fromCoroutine(step(passage({"Authorization": "t"})))
        self.assertNoResult(asking)
        clock.advance(3.0)
        self.failureResultOf(asking, AuthorizerFailed)
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_cache(self) -> None:
        clock = Clock()
        invoker = Scripted(simple(True, n=1), simple(True, n=2), simple(False))
        step = LambdaAuthorizer(authorizer_config(result_ttl=60.0), invoker, clock)
        first = passage({"Authorization": "a"})
        await self.ask(step, first)
        self.assertEqual(first.exchange.authorizer_cache, "miss")
        again = passage({"Authorization": "a"})
        await self.ask(step, again)
        self.assertEqual(again.exchange.authorizer_cache, "hit")
        assert again.principal is not None
        self.assertEqual(again.principal.context, {"n": 1})
        other = passage({"Authorization": "b"})
        await self.ask(step, other)
        self.assertEqual(other.exchange.authorizer_cache, "miss")
        clock.advance(60.0)
        expired = passage({"Authorization": "a"})
        with self.assertRaises(Forbidden):
            await self.ask(step, expired)
        self.assertEqual(expired.exchange.authorizer_cache, "miss")
        self.assertEqual(len(invoker.calls), 3)


async def _value(result: InvokeResult) -> InvokeResult:
    return result


class LocalFunctionTests(TestCase):
    """
    The authorizer as a real function, run by the local backend (awslambdaric).
    """

    timeout = 60

    def invoker(self) -> LocalInvoker:
        reactor = real_reactor()
        invoker = LocalInvoker(
            cast(LocalReactor, reactor), LocalConfig(functions_dir=FUNCTIONS, concurrency=2)
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(invoker.stop()))
        return invoker

    async def test_v2_and_v1(self) -> None:
        invoker = self.invoker()
        reactor = real_reactor()
        v2 = LambdaAuthorizer(authorizer_config(), invoker, reactor)
        p = passage({"Authorization": "good"})
        await Deferred.fromCoroutine(v2(p))
        assert p.principal is not None
        self.assertEqual(
            p.principal.context, {"tenant": "acme", "principalId": "bob", "type": "REQUEST"}
        )
        with self.assertRaises(Forbidden):
            await Deferred.fromCoroutine(v2(passage({"Authorization": "bad"})))
        for token in ("broken", "odd"):
            with self.assertRaises(AuthorizerFailed):
                await Deferred.fromCoroutine(v2(passage({"Authorization": token})))
        v1_config = authorizer_config(payload_format="1.0", simple_responses=False)
        v1 = LambdaAuthorizer(v1_config, invoker, reactor)
        p = passage({"Authorization": "good"})
        await Deferred.fromCoroutine(v1(p))
        self.assertEqual(p.exchange.user, "bob")
        with self.assertRaises(Forbidden):
            await Deferred.fromCoroutine(v1(passage({"Authorization": "bad"})))

    async def test_own_timeout(self) -> None:
        step = LambdaAuthorizer(authorizer_config(timeout=0.5), self.invoker(), real_reactor())
        with self.assertRaises(AuthorizerFailed):
            await Deferred.fromCoroutine(step(passage({"Authorization": "slow"})))
