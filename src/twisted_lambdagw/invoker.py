"""
The seam between the gateway and whatever runs functions.

The resource only knows this interface.  L{twisted_lambdagw.aws.AWSInvoker}
calls Lambda's Invoke API; the local backend runs functions on this machine.
Both raise the same L{twisted_lambdagw.errors} for service-side failures and
report a function's own error in L{InvokeResult.function_error}, so error
mapping, logging and limits live in one place above them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

InvocationType = Literal["RequestResponse", "Event"]


@dataclass(frozen=True, slots=True)
class InvokeCall:
    """
    One invocation: which function, with which payload.

    ``function`` is a plain name or, when the route's ``single`` says so, a
    full ARN.  The client never chooses either part of it, nor the qualifier.
    """

    function: str
    payload: bytes
    qualifier: str | None = None
    invocation_type: InvocationType = "RequestResponse"
    request_id: str = ""
    timeout: float = 30.0
    """Seconds the caller will wait; a local runtime uses it as the deadline."""
    trace_id: str | None = None
    method: str = ""
    """The client's HTTP method; GET, HEAD and OPTIONS may be retried when the
    route allows it.  Empty when there is no client request."""


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """
    What came back from a successful call to the invoke API.

    A function that raised still produces a result: ``function_error`` then
    holds the error kind (``Unhandled``, ``Handled``) and ``payload`` the
    runtime's error document.
    """

    payload: bytes
    status: int = 200
    function_error: str | None = None
    aws_request_id: str | None = None
    executed_version: str | None = None
    log_result: str | None = None


class Invoker(Protocol):
    """
    Runs one function invocation.
    """

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        """
        Invoke a function and return its result.

        Raises a L{twisted_lambdagw.errors.GatewayError} when the call itself
        fails.  Cancelling the awaiting Deferred cancels the call.
        """
        ...
