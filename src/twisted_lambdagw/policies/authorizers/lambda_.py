"""
The Lambda authorizer: a function decides, as API Gateway HTTP APIs ask it to.

The function gets a REQUEST event (payload 2.0, or 1.0) built from the same
event formats routes use, with C{type}, C{routeArn} (C{methodArn} in 1.0)
and C{identitySource} added and no body.  It answers with a simple response
(C{{"isAuthorized": ..., "context": ...}}) or an IAM policy
(C{principalId}, C{policyDocument}, C{context}).  Answers are cached by
the identity source values for C{result_ttl}; an IAM policy is cached as
the function wrote it and checked against each request's route ARN.  The
function is invoked through the same L{Invoker} seam as routes, with the
authorizer's own timeout; anything but a clear answer is a 500.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ...core.authorizers import LambdaAuthorizerConfig, describe
from ...core.errors import AuthorizerFailed, Forbidden, GatewayError, Unauthorized
from ...core.formats import apigw_v1, apigw_v2
from ...core.formats._common import ACCOUNT_ID, API_ID, HOP_BY_HOP, STAGE
from ...core.messages import IncomingRequest, Reply
from ...invokers.base import InvokeCall, Invoker, InvokeResult
from ..chain import Passage, Principal, Stage
from ._common import ALLOWED, DENIED, FAILED, INVALID, MISSING, Ambiguous, identity_value, record

MAX_CACHED = 10_000
"""Cached answers per authorizer; the oldest goes first past this."""
INVOKE_ACTIONS = frozenset({"execute-api:Invoke", "execute-api:*", "*"})


class Malformed(Exception):
    """
    The function's answer is not one an authorizer may give.
    """


@dataclass(frozen=True, slots=True)
class Answer:
    """
    What the function said, before it is checked against a route.
    """

    authorized: bool | None
    """A simple response's isAuthorized; None for an IAM policy."""
    statements: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """An IAM policy's (effect, resources) for execute-api:Invoke."""
    principal_id: str = ""
    context: Mapping[str, object] | None = None

    def allows(self, arn: str) -> bool:
        """
        Whether the answer lets C{arn} in: an IAM policy needs an Allow matching it and no Deny.
        """
        if self.authorized is not None:
            return self.authorized
        matching = [
            effect
            for effect, resources in self.statements
            if any(fnmatch.fnmatchcase(arn, resource) for resource in resources)
        ]
        return "Allow" in matching and "Deny" not in matching


def parse_answer(payload: bytes, simple: bool) -> Answer:
    """
    The function's answer; L{Malformed} when it is not one.
    """
    try:
        document = json.loads(payload)
    except ValueError:
        raise Malformed("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise Malformed("the answer is not an object")
    context = document.get("context")
    if context is not None and not isinstance(context, dict):
        raise Malformed("context is not an object")
    if simple:
        authorized = document.get("isAuthorized")
        if not isinstance(authorized, bool):
            raise Malformed("isAuthorized is not a boolean")
        principal = context.get("principalId") if context else None
        return Answer(authorized, (), principal if isinstance(principal, str) else "", context)
    principal_id = document.get("principalId")
    if not isinstance(principal_id, str):
        raise Malformed("principalId is not a string")
    policy = document.get("policyDocument")
    statements = policy.get("Statement") if isinstance(policy, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise Malformed("policyDocument has no Statement list")
    found: list[tuple[str, tuple[str, ...]]] = []
    for statement in statements:
        if not isinstance(statement, dict):
            raise Malformed("a Statement is not an object")
        effect = statement.get("Effect")
        actions = _strings(statement.get("Action"))
        resources = _strings(statement.get("Resource"))
        if effect not in ("Allow", "Deny") or actions is None or resources is None:
            raise Malformed("a Statement lacks Effect, Action or Resource")
        if INVOKE_ACTIONS.intersection(actions):
            found.append((effect, tuple(resources)))
    return Answer(None, tuple(found), principal_id, context)


def _strings(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


class LambdaAuthorizer:
    """
    One C{[authorizer:NAME]} of type lambda: a step of every route naming it.

    @param invoker: how the function is invoked (aws or local), as for a route.
    @param clock: for the timeout, the cache and the events' times.
    """

    stage: ClassVar[Stage] = "authorize"
    log = Logger()

    def __init__(
        self, config: LambdaAuthorizerConfig, invoker: Invoker, clock: IReactorTime
    ) -> None:
        self.config = config
        self.invoker = invoker
        self.clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, Answer]] = {}
        self._region = config.region or "us-east-1"

    def describe(self) -> str:
        return describe(self.config)

    def route_arn(self, passage: Passage) -> str:
        """
        The request's route ARN, as API Gateway writes it, for the event and IAM policies.
        """
        method = passage.request.method.decode("ascii", "replace")
        return (
            f"arn:aws:execute-api:{self._region}:{ACCOUNT_ID}:{API_ID}"
            f"/{STAGE}/{method}{passage.raw_path}"
        )

    async def __call__(self, passage: Passage) -> Reply | None:
        values: list[str] = []
        for source in self.config.identity_sources:
            try:
                value = identity_value(passage.request, source)
            except Ambiguous as e:
                record(passage, INVALID)
                raise Unauthorized(detail=f"authorizer {self.config.name}: {e}") from None
            if value is None:
                record(passage, MISSING)
                raise Unauthorized(detail=f"authorizer {self.config.name}: no {source.text}")
            values.append(value)
        key = tuple(values)
        answer = self._cached(key, passage)
        if answer is None:
            answer = await self._ask(passage, values)
            if self.config.result_ttl > 0:
                if len(self._cache) >= MAX_CACHED:
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = (self.clock.seconds() + self.config.result_ttl, answer)
        if not answer.allows(self.route_arn(passage)):
            record(passage, DENIED)
            raise Forbidden(detail=f"authorizer {self.config.name} said no")
        principal = Principal(answer.principal_id, "lambda", context=answer.context or {})
        record(passage, ALLOWED, principal)
        return None

    def _cached(self, key: tuple[str, ...], passage: Passage) -> Answer | None:
        if self.config.result_ttl <= 0:
            return None
        entry = self._cache.get(key)
        if entry is not None and entry[0] > self.clock.seconds():
            passage.exchange.authorizer_cache = "hit"
            return entry[1]
        if entry is not None:
            del self._cache[key]
        passage.exchange.authorizer_cache = "miss"
        return None

    async def _ask(self, passage: Passage, values: list[str]) -> Answer:
        call = InvokeCall(
            function=self.config.function,
            payload=self.event(passage, values),
            qualifier=self.config.qualifier,
            request_id=passage.request_id,
            timeout=self.config.timeout,
        )
        invoking = Deferred.fromCoroutine(self.invoker.invoke(call))
        timer = self.clock.callLater(self.config.timeout, invoking.cancel)
        try:
            result: InvokeResult = await invoking
            if result.function_error is not None:
                raise Malformed(f"the function failed ({result.function_error})")
            return parse_answer(result.payload, self.config.simple_responses)
        except CancelledError:
            why = f"no answer within {self.config.timeout:g}s"
        except GatewayError as e:
            why = f"{e.message}: {e.detail}"
        except Malformed as e:
            why = str(e)
        finally:
            if timer.active():
                timer.cancel()
        record(passage, FAILED)
        self.log.warn(
            "authorizer {authorizer} ({function}) failed: {why}",
            authorizer=self.config.name,
            function=self.config.function,
            why=why,
            request_id=passage.request_id,
        )
        raise AuthorizerFailed(detail=f"authorizer {self.config.name}: {why}")

    def event(self, passage: Passage, values: list[str]) -> bytes:
        """
        The REQUEST event for one request, in the configured payload format.
        """
        incoming = request_for(passage, self.clock.seconds())
        arn = self.route_arn(passage)
        if self.config.payload_format == "2.0":
            base = json.loads(apigw_v2.build(incoming))
            head: dict[str, object] = {
                "version": "2.0",
                "type": "REQUEST",
                "routeArn": arn,
                "identitySource": values,
            }
        else:
            base = json.loads(apigw_v1.build(incoming))
            joined = ",".join(values)
            head = {
                "version": "1.0",
                "type": "REQUEST",
                "methodArn": arn,
                "identitySource": joined,
                "authorizationToken": joined,
            }
        for name in ("body", "isBase64Encoded"):
            base.pop(name, None)
        base.get("requestContext", {}).pop("authorizer", None)
        return json.dumps({**head, **base}, separators=(",", ":")).encode()


GATEWAY_SET = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-request-id",
     "x-authenticated-user"}
)  # fmt: skip
"""Request headers only the gateway sets: a client's values never reach an authorizer."""


def request_for(passage: Passage, now: float) -> IncomingRequest:
    """
    The request as an event format sees it, without its body, for the authorizer's event.

    Its headers are the client's without hop-by-hop ones and those the
    gateway sets, which are the gateway's, as a route's function gets them.
    """
    request = passage.request
    origin = passage.origin
    gateway_headers = [
        ("X-Forwarded-For", origin.remote),
        ("X-Forwarded-Proto", origin.scheme),
        ("X-Forwarded-Port", str(origin.port)),
        ("X-Request-ID", passage.request_id),
    ]
    raw = request.requestHeaders
    dropped = {*HOP_BY_HOP, *GATEWAY_SET, "content-length"}
    for value in raw.getRawHeaders(b"connection", []):
        dropped.update(token.strip().lower() for token in value.decode("latin-1").split(","))
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in raw.getAllRawHeaders()
        if name.decode("latin-1").lower() not in dropped
        for value in values
    ]
    headers += gateway_headers
    address = request.getHost()
    hosts = raw.getRawHeaders(b"host")
    host = hosts[-1].decode("latin-1") if hosts else f"{getattr(address, 'host', '')}"
    _, _, query = request.uri.decode("latin-1").partition("?")
    return IncomingRequest(
        request_id=passage.request_id,
        method=request.method.decode("ascii", "replace"),
        raw_path=passage.raw_path,
        path=passage.path,
        function_raw_path=passage.raw_path,
        function_path=passage.path,
        raw_query=query,
        headers=tuple(headers),
        body=b"",
        protocol=request.clientproto.decode("ascii", "replace"),
        scheme=origin.scheme,
        host=host,
        remote_addr=origin.remote,
        server_port=getattr(address, "port", 0),
        time=now,
        route_prefix=passage.route.prefix,
        function_name="",
    )
