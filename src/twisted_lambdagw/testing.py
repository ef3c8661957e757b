"""
Test doubles for code that uses the gateway, shipped with it as treq ships
C{treq.testing}.

L{FakeLambda} is an in-memory Lambda Invoke API: a twisted.web resource that
runs Python handlers, so the real L{twisted_lambdagw.invokers.aws.invoker.AWSInvoker} can be
tested end to end through C{treq.testing.StubTreq} or a loopback port.
L{InProcessInvoker} skips HTTP altogether and calls handlers directly.
"""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_lambdagw.core.errors import NotFound
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult

Handler = Callable[[Any, "FakeContext"], Any]
"""A Lambda handler: C{handler(event, context)}; may return a Deferred."""

INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"


@dataclass(frozen=True)
class FakeContext:
    """
    The parts of Lambda's context object handlers commonly read.
    """

    function_name: str
    aws_request_id: str
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    memory_limit_in_mb: int = 128
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 30000


@dataclass(frozen=True)
class RawResponse:
    """
    A handler result that sets the Invoke API's raw HTTP answer.

    Lets a test make the fake behave like Lambda refusing a call (a 429 with
    C{Retry-After}, a 404 C{ResourceNotFoundException}) or send bytes that
    are not JSON.
    """

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, error_type: str, message: str, **headers: str) -> RawResponse:
        """
        An AWS-style error: C{x-amzn-ErrorType} and a JSON body.
        """
        body = json.dumps({"Type": "User", "message": message}).encode()
        return cls(status, body, {"x-amzn-ErrorType": error_type, **headers})


@dataclass(frozen=True)
class RecordedCall:
    """
    One request the fake received, as it arrived on the wire.
    """

    function: str
    qualifier: str | None
    headers: Mapping[str, str]
    body: bytes
    path: str


def error_document(error: BaseException) -> dict[str, Any]:
    """
    A runtime-style error document for an exception a handler raised.
    """
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


class FakeLambda(Resource):
    """
    An in-memory Lambda Invoke API that runs Python handlers.

    A handler's return value is JSON-encoded as the result; an exception
    becomes a function error (C{X-Amz-Function-Error: Unhandled}); a
    L{RawResponse} is sent as it is; a Deferred is waited for (and cancelled
    if the caller goes away).  Unknown functions get Lambda's 404.
    """

    isLeaf = True

    def __init__(self, functions: Mapping[str, Handler] | None = None) -> None:
        super().__init__()
        self.functions: dict[str, Handler] = dict(functions or {})
        self.calls: list[RecordedCall] = []
        self.cancelled: list[str] = []

    def render_POST(self, request: Request) -> bytes | int:
        path = request.path.decode("ascii")
        if not (path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX)):
            request.setResponseCode(404)
            return b'{"message": "unknown operation"}'
        function = unquote(path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)])
        query = parse_qs(request.uri.partition(b"?")[2].decode("ascii"))
        qualifier = query.get("Qualifier", [None])[0]
        body = request.content.read() if request.content is not None else b""
        headers = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.calls.append(RecordedCall(function, qualifier, headers, body, path))
        request_id = str(uuid.uuid4())
        request.setHeader("x-amzn-RequestId", request_id)
        name = function.rsplit(":function:", 1)[-1].split(":", 1)[0]
        handler = self.functions.get(name)
        if handler is None:
            request.setResponseCode(404)
            request.setHeader("x-amzn-ErrorType", "ResourceNotFoundException")
            message = f"Function not found: {function}"
            return json.dumps({"Message": message, "Type": "User"}).encode()
        if headers.get("x-amz-invocation-type") == "Event":
            request.setResponseCode(202)
            return b""
        try:
            event = json.loads(body) if body else None
        except ValueError:
            request.setResponseCode(400)
            request.setHeader("x-amzn-ErrorType", "InvalidRequestContentException")
            return b'{"Type": "User", "message": "Could not parse request body into json"}'
        context = FakeContext(function_name=name, aws_request_id=request_id)
        running = ensureDeferred(_call(handler, event, context))
        gone: list[bool] = []

        def lost(reason: object) -> None:
            gone.append(True)
            running.cancel()

        request.notifyFinish().addErrback(lost)
        running.addCallback(lambda result: self._answer(request, result, gone))
        running.addErrback(lambda failure: self._answer(request, failure.value, gone))
        return NOT_DONE_YET

    def _answer(self, request: Request, result: Any, gone: list[bool]) -> None:
        if request.finished or gone:
            return
        request.setHeader("X-Amz-Executed-Version", "$LATEST")
        if isinstance(result, RawResponse):
            request.setResponseCode(result.status)
            for name, value in result.headers.items():
                request.setHeader(name, value)
            body = result.body
        elif isinstance(result, BaseException):
            request.setHeader("X-Amz-Function-Error", "Unhandled")
            body = json.dumps(error_document(result)).encode()
        else:
            body = json.dumps(result).encode()
        request.write(body)
        request.finish()


async def _call(handler: Handler, event: Any, context: FakeContext) -> Any:
    result = handler(event, context)
    if isinstance(result, Deferred):
        result = await result
    return result


class InProcessInvoker:
    """
    An Invoker that calls Python handlers directly, in the reactor thread.

    For tests and examples only: a real backend never runs function code on
    the reactor thread.
    """

    def __init__(self, functions: Mapping[str, Handler]) -> None:
        self.functions = dict(functions)
        self.calls: list[InvokeCall] = []

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        self.calls.append(call)
        handler = self.functions.get(call.function)
        if handler is None:
            raise NotFound(detail=f"no function {call.function!r}")
        request_id = str(uuid.uuid4())
        context = FakeContext(function_name=call.function, aws_request_id=request_id)
        event = json.loads(call.payload) if call.payload else None
        try:
            result = await _call(handler, event, context)
        except CancelledError:
            raise  # the caller gave up (a timeout, a client gone): not a function error
        except Exception as e:
            payload = json.dumps(error_document(e)).encode()
            return InvokeResult(payload, function_error="Unhandled", aws_request_id=request_id)
        if isinstance(result, RawResponse):
            return InvokeResult(result.body, aws_request_id=request_id)
        return InvokeResult(json.dumps(result).encode(), aws_request_id=request_id)
