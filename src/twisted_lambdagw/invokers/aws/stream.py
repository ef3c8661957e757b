"""
The body of an InvokeWithResponseStream answer, decoded as it arrives.

L{twisted_lambdagw.invokers.aws.invoker.AWSInvoker.invoke_stream} hands back an
L{EventStreamResponse} once Lambda has answered 200.  Its body is an
``application/vnd.amazon.eventstream`` sequence that may run for minutes, so
it is read through C{IResponse.deliverBody} with a protocol of our own
rather than collected: every piece Twisted delivers goes through the
incremental L{ResponseStreamDecoder} and each payload is passed on at once.

Backpressure works on the upstream socket itself.  The protocol's transport
is the HTTP client's proxy for the TCP connection, so pausing it stops
reading from Lambda; TCP flow control then stops Lambda.  The HTTP client
resumes that transport right after C{makeConnection} (it paused it while
nobody consumed the body), so a pause asked for before the body starts is
remembered and applied once delivery has begun.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.iweb import IResponse
from zope.interface import implementer

from twisted_lambdagw.core.errors import GatewayError, InvokeFailed
from twisted_lambdagw.core.eventstream import (
    InvokeComplete,
    PayloadChunk,
    ResponseStreamDecoder,
    TruncatedStreamError,
    UnknownEvent,
)
from twisted_lambdagw.invokers.base import StreamReceiver

_DONE = Failure(ResponseDone())


class _Ignore:
    """
    The receiver of a stream nobody listens to any more.
    """

    def stream_data(self, data: bytes) -> None:
        pass

    def stream_complete(self, complete: InvokeComplete) -> None:
        pass

    def stream_failed(self, error: GatewayError) -> None:
        pass


@implementer(IPushProducer)
class EventStreamResponse(Protocol):
    """
    One streamed invocation's body: decodes it and feeds a L{StreamReceiver}.

    It is the body protocol given to C{deliverBody} and the push producer
    the gateway pauses, resumes and stops.

    :param on_end: called once when the stream ends: completed, failed,
        cut or stopped (the invoker gives its connection slot back then).
        The caller must start or stop every stream it is given.
    """

    log = Logger()

    def __init__(
        self,
        response: IResponse,
        function: str,
        request_id: str = "",
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._response = response
        self._on_end = on_end
        self._function = function
        self._request_id = request_id
        headers = response.headers
        self.aws_request_id = _header(headers.getRawHeaders(b"x-amzn-requestid"))
        self.executed_version = _header(headers.getRawHeaders(b"x-amz-executed-version"))
        self._decoder = ResponseStreamDecoder()
        self._receiver: StreamReceiver = _Ignore()
        self._started = False
        self._delivering = False
        self._paused = False
        self._ended = False
        self.wire_bytes = 0
        """Bytes of event stream read from Lambda so far."""

    # The gateway's side.

    def start(self, receiver: StreamReceiver) -> None:
        if self._started:
            raise RuntimeError("the stream was already started")
        self._started = True
        if not self._ended:
            self._receiver = receiver
        self._response.deliverBody(self)
        # deliverBody has resumed the transport; now the pause can hold.
        self._delivering = True
        if self._paused:
            self.pauseProducing()

    def pauseProducing(self) -> None:
        self._paused = True
        upstream = self._upstream()
        if self._delivering and upstream is not None:
            upstream.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        upstream = self._upstream()
        if self._delivering and upstream is not None:
            upstream.resumeProducing()

    def stopProducing(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._receiver = _Ignore()
        if not self._started:
            # Take the body only to close its connection.
            self._started = True
            self._response.deliverBody(self)
        # Closes the connection: the HTTP client cannot reuse a connection
        # whose response was not read to the end.
        self._close()
        self._finished()

    # The HTTP client's side.

    def dataReceived(self, data: bytes) -> None:
        if self._ended:
            return
        self.wire_bytes += len(data)
        try:
            events = self._decoder.feed(data)
        except InvokeFailed as error:
            self._fail(error)
            return
        # A receiver that stops the stream midway is replaced by _Ignore.
        for event in events:
            if isinstance(event, PayloadChunk):
                self._receiver.stream_data(event.payload)
            elif isinstance(event, UnknownEvent):
                self.log.info(
                    "ignoring unknown event {event_type} in the stream from {function}",
                    event_type=event.event_type,
                    function=self._function,
                    request_id=self._request_id,
                )

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if self._ended:
            return
        # Lambda's InvokeComplete decides how the stream ended; how the HTTP
        # body ended after it does not matter.  Without it, it is truncated.
        try:
            complete = self._decoder.finish()
        except InvokeFailed as error:
            if reason.check(ResponseDone):
                self._fail(error)
            else:
                message = reason.getErrorMessage()
                self._fail(TruncatedStreamError(f"connection lost mid-stream: {message}"))
            return
        self._ended = True
        receiver, self._receiver = self._receiver, _Ignore()
        self._finished()
        receiver.stream_complete(complete)

    def _fail(self, error: InvokeFailed) -> None:
        self._ended = True
        receiver, self._receiver = self._receiver, _Ignore()
        self._close()
        self._finished()
        receiver.stream_failed(error)

    def _finished(self) -> None:
        """
        The stream is over, however it ended: tell C{on_end}, once.
        """
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    def _upstream(self) -> IPushProducer | None:
        """
        The HTTP client's producer for the connection, while the body is read.
        """
        if self._ended or self.transport is None:
            return None
        producer: IPushProducer | None = IPushProducer(self.transport, None)
        return producer

    def _close(self) -> None:
        producer: IPushProducer | None = IPushProducer(self.transport, None)
        if producer is not None:
            producer.stopProducing()


def _header(values: list[bytes] | None) -> str | None:
    return values[-1].decode("latin-1") if values else None
