"""
The seam between the gateway and whatever runs functions.

The resource only knows this interface.  L{twisted_lambdagw.invokers.aws.invoker.AWSInvoker}
calls Lambda's Invoke API; the local backend runs functions on this machine.
Both raise the same L{twisted_lambdagw.core.errors} for service-side failures and
report a function's own error in L{InvokeResult.function_error}, so error
mapping, logging and limits live in one place above them.

Routes with ``stream = yes`` use L{StreamingInvoker.invoke_stream} instead:
the function's output arrives as a L{ResponseStream} that the gateway
relays to the client as it comes, pausing it while the client is slow.
"""

from __future__ import annotations

from dataclasses import field
from typing import Literal, Protocol, runtime_checkable

from twisted_lambdagw.core.errors import GatewayError
from twisted_lambdagw.core.eventstream import InvokeComplete
from twisted_lambdagw.core.messages import NOT_PARSED
from twisted_lambdagw.core.records import record

InvocationType = Literal["RequestResponse", "Event"]


@record
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


@record
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
    document: object = field(default=NOT_PARSED, compare=False, repr=False)
    """C{payload} parsed as JSON, when the invoker parsed it already."""


class Invoker(Protocol):
    """
    Runs one function invocation.
    """

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        """
        Invoke a function and return its result.

        Raises a L{twisted_lambdagw.core.errors.GatewayError} when the call itself
        fails.  Cancelling the awaiting Deferred cancels the call.
        """
        ...


class StreamReceiver(Protocol):
    """
    What a streamed invocation hands the function's output to, as it comes.

    Exactly one of L{stream_complete} and L{stream_failed} is called, once,
    after the last L{stream_data}; nothing is called after C{stopProducing}.
    """

    def stream_data(self, data: bytes) -> None:
        """
        The next bytes the function streamed, in order; never empty.
        """
        ...

    def stream_complete(self, complete: InvokeComplete) -> None:
        """
        The stream ended as Lambda meant it to; ``complete.error_code`` says
        whether the function failed, possibly after some data.
        """
        ...

    def stream_failed(self, error: GatewayError) -> None:
        """
        The stream broke: it cannot be decoded, Lambda reported an error in
        it, the connection ended before the stream did, or (local functions)
        the function never got to answer.
        """
        ...


class ResponseStream(Protocol):
    """
    A streamed invocation that Lambda accepted: its body is still to come.

    It is an C{IPushProducer} for the body: pausing it stops reading from
    the upstream connection (so a slow client slows the function down, and
    nothing piles up in the gateway) and C{stopProducing} abandons the call.
    """

    aws_request_id: str | None
    executed_version: str | None

    def start(self, receiver: StreamReceiver) -> None:
        """
        Start delivering the body to C{receiver}; call once.
        """
        ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None:
        """
        Abandon the stream and close its connection; the receiver hears nothing more.
        """
        ...


@runtime_checkable
class StreamingInvoker(Invoker, Protocol):
    """
    An invoker that can also return a function's response as a stream.
    """

    async def invoke_stream(self, call: InvokeCall) -> ResponseStream:
        """
        Start a streamed invocation; return once the stream has begun.

        Raises a L{twisted_lambdagw.core.errors.GatewayError} when the call is
        refused before any streaming starts, with the same classification as
        L{Invoker.invoke}.  Cancelling the awaiting Deferred cancels the call.
        """
        ...
