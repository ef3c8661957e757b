"""
A local function's response, streamed to the gateway as the runtime writes it.

L{LocalResponseStream} sits between the Runtime API and the gateway's
stream relay.  To the Runtime API it is the invocation's
L{twisted_lambdagw.invokers.local.runtime_api.StreamSink}: it receives the body of a
``Lambda-Runtime-Function-Response-Mode: streaming`` post piece by piece,
and a producer that pauses reading the runtime's connection, so a slow
client slows the function's writes down.  To the gateway it is the same
L{twisted_lambdagw.invokers.base.ResponseStream} an AWS streamed invocation
returns, so everything above it (prelude, head, timeouts, truncation) is
shared.

What the runtime reported decides the end, as Lambda's InvokeComplete would:
a streamed post that ends cleanly is success, its error trailers a function
error; a buffered post (every awslambdaric handler, which cannot stream) is
one chunk and success; a post to ``/error`` is a function error before any
byte; a runtime that dies or breaks its stream is a failed stream.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_lambdagw.core.errors import GatewayError, InvokeFailed
from twisted_lambdagw.core.eventstream import InvokeComplete
from twisted_lambdagw.invokers.base import StreamReceiver

from .runtime_api import Outcome


@implementer(IPushProducer)
class LocalResponseStream:
    """
    One local invocation's response, as a stream.

    Whatever arrives before L{start} is held until then (the gateway starts
    the stream right after the call returns, so this is at most one piece).
    """

    def __init__(self, aws_request_id: str, executed_version: str) -> None:
        self.aws_request_id: str | None = aws_request_id
        self.executed_version: str | None = executed_version
        self._receiver: StreamReceiver | None = None
        self._early: list[bytes] = []
        self._end: Outcome | Failure | None = None
        self._result: Deferred[Outcome] | None = None
        self._producer: IPushProducer | None = None
        self._paused = False
        self._stopped = False

    def attach(self, result: Deferred[Outcome]) -> None:
        """
        The pool's Deferred for the invocation: it fires when the runtime is done.
        """
        self._result = result
        result.addBoth(self._ended)

    # The Runtime API's side.

    def begin(self, producer: IPushProducer) -> None:
        self._producer = producer
        if self._stopped:
            producer.stopProducing()
        elif self._paused:
            producer.pauseProducing()

    def data(self, data: bytes) -> None:
        if self._stopped or not data:
            return
        if self._receiver is None:
            self._early.append(data)
        else:
            self._receiver.stream_data(data)

    # The gateway's side.

    def start(self, receiver: StreamReceiver) -> None:
        if self._receiver is not None:
            raise RuntimeError("the stream was already started")
        self._receiver = receiver
        early, self._early = self._early, []
        for data in early:
            if not self._stopped:
                receiver.stream_data(data)
        if self._end is not None and not self._stopped:
            self._deliver(self._end)

    def pauseProducing(self) -> None:
        self._paused = True
        if self._producer is not None and not self._stopped:
            self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._producer is not None and not self._stopped:
            self._producer.resumeProducing()

    def stopProducing(self) -> None:
        """
        Abandon the invocation: abort a stream the runtime is writing, or
        take back an event it has not started on.
        """
        if self._stopped:
            return
        self._stopped = True
        self._receiver = None
        self._early = []
        if self._producer is not None:
            self._producer.stopProducing()
        if self._result is not None and not self._result.called:
            self._result.cancel()

    # Inside.

    def _ended(self, result: Outcome | Failure) -> None:
        if self._stopped:
            return  # includes the CancelledError of stopProducing
        if self._receiver is None:
            self._end = result
        else:
            self._deliver(result)

    def _deliver(self, result: Outcome | Failure) -> None:
        receiver = self._receiver
        assert receiver is not None
        self._stopped = True  # nothing more goes to the receiver
        if isinstance(result, Failure):
            error = result.value
            if not isinstance(error, GatewayError):
                message = "cancelled" if isinstance(error, CancelledError) else str(error)
                error = InvokeFailed(detail=f"local invocation failed: {message}")
            receiver.stream_failed(error)
        elif result.error_type is not None:
            details = result.payload.decode("utf-8", "replace")
            receiver.stream_complete(InvokeComplete("Unhandled", details))
        else:
            if not result.streamed and result.payload:
                receiver.stream_data(result.payload)
            receiver.stream_complete(InvokeComplete())
