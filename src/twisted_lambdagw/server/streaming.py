"""
Relaying a streamed function response to the client as it arrives.

Routes with C{stream = yes} do not wait for the whole result.  The function's
bytes come from a L{ResponseStream}; L{StreamRelay} splits off the
http-integration prelude (L{PreludeParser}), writes the status and headers
as soon as they are known and then each piece of body as it comes, with
chunked transfer encoding.

Three rules shape it:

- Backpressure.  The relay is the request's push producer: when the
  client's socket buffer is full, Twisted pauses it and it pauses the
  upstream stream, which stops reading from Lambda.  A slow client slows the
  function down instead of making the gateway hold the stream in memory.
- The error contract holds until the first byte.  Before the head is
  written every failure is an ordinary L{GatewayError} raised to the
  resource (502/503/504 JSON).  After it, a failure can only be signalled by
  cutting the connection without the final zero-length chunk, so the client
  sees a truncated response; the reason goes to the log.
- Two clocks.  The route's C{timeout} bounds the time to the head (first
  byte); C{stream_idle_timeout} bounds each gap after it, whether the
  function is silent or the client stopped reading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from twisted_lambdagw.core.errors import (
    FunctionFailed,
    GatewayError,
    InvokeFailed,
    InvokeTimeout,
    MalformedReply,
)
from twisted_lambdagw.core.eventstream import InvokeComplete
from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.core.messages import Headers
from twisted_lambdagw.core.prelude import PreludeMode, PreludeParser, ResponseHead
from twisted_lambdagw.invokers.base import InvokeCall, ResponseStream, StreamingInvoker
from twisted_lambdagw.observe.logs import log_function_error

if TYPE_CHECKING:
    from twisted_lambdagw.core.config import RouteConfig

DEFAULT_CONTENT_TYPE = "application/octet-stream"
"""A stream without a prelude is sent with this type, as Function URLs do."""

_MODES: dict[str, PreludeMode] = {"auto": "auto", "always": "always", "never": "never"}


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """
    How one route's streams are relayed.
    """

    prelude: PreludeMode = "auto"
    idle_timeout: float = 30.0
    default_content_type: str = DEFAULT_CONTENT_TYPE

    @classmethod
    def for_route(cls, route: RouteConfig) -> StreamSettings:
        return cls(prelude=_MODES[route.stream_prelude], idle_timeout=route.stream_idle_timeout)


async def serve_stream(
    request: Request,
    invoker: StreamingInvoker,
    call: InvokeCall,
    exchange: Exchange,
    clock: IReactorTime,
    settings: StreamSettings,
    *,
    head_headers: Callable[[Headers], Headers] | None = None,
) -> None:
    """
    Invoke with response streaming and relay the response to C{request}.

    C{head_headers}, if given, turns the function's response headers into
    those sent (the route's policies add theirs).

    Returns once the response has ended, finished or cut.  Raises a
    L{GatewayError} only while nothing has been written, so the caller can
    still answer with the error contract; raises CancelledError when the
    caller cancels (the client went away), after abandoning the upstream.
    """
    started = clock.seconds()
    opening = Deferred.fromCoroutine(invoker.invoke_stream(call))
    opening.addTimeout(call.timeout, clock)
    try:
        stream = await opening
    except TimeoutError:
        exchange.stream_outcome = "timeout"
        raise InvokeTimeout(detail=f"{call.function} did not start streaming in time") from None
    except CancelledError:
        exchange.stream_outcome = "client_gone"
        raise
    except GatewayError:
        exchange.stream_outcome = "refused"
        raise
    exchange.aws_request_id = stream.aws_request_id
    exchange.executed_version = stream.executed_version

    relay = StreamRelay(
        request, stream, exchange, clock, settings, call.function, head_headers=head_headers
    )
    head = relay.start()
    head.addTimeout(max(0.0, call.timeout - (clock.seconds() - started)), clock)
    try:
        await head
    except TimeoutError:
        exchange.stream_outcome = "timeout"
        raise InvokeTimeout(detail=f"{call.function} sent no response head in time") from None
    await relay.done


@implementer(IPushProducer)
class StreamRelay:
    """
    Writes one streamed response to one request, as the stream delivers it.

    It is the L{twisted_lambdagw.invokers.base.StreamReceiver} of the stream and
    the push producer registered on the request.  L{head_written} fires when
    the status and headers went out, or fails with the L{GatewayError} that
    ended the stream before that; L{done} fires when a response whose head
    was written has ended, however it ended.  Cancelling either abandons
    the upstream stream.
    """

    log = Logger()

    def __init__(
        self,
        request: Request,
        stream: ResponseStream,
        exchange: Exchange,
        clock: IReactorTime,
        settings: StreamSettings,
        function: str,
        *,
        head_headers: Callable[[Headers], Headers] | None = None,
    ) -> None:
        self._request = request
        self._head_headers = head_headers
        self._stream = stream
        self._exchange = exchange
        self._clock = clock
        self._settings = settings
        self._function = function
        self._parser = PreludeParser(
            mode=settings.prelude, default_content_type=settings.default_content_type
        )
        self.head_written: Deferred[None] = Deferred(self._cancelled)
        self.done: Deferred[None] = Deferred(self._cancelled)
        self._head_sent = False
        self._ended = False
        self._registered = False
        self._paused = False
        self._idle: IDelayedCall | None = None

    def start(self) -> Deferred[None]:
        """
        Start relaying; returns L{head_written}.
        """
        self._stream.start(self)
        return self.head_written

    # What the stream delivers.

    def stream_data(self, data: bytes) -> None:
        if self._ended:
            return
        try:
            head, body = self._parser.feed(data)
        except MalformedReply as error:
            self._stream.stopProducing()
            self._fail_before_head(error, "malformed")
            return
        self._forward(head, body)

    def stream_complete(self, complete: InvokeComplete) -> None:
        if self._ended:
            return
        if complete.error_code is not None:
            log_function_error(
                self.log,
                complete.error_details or "",
                function=self._function,
                kind=complete.error_code,
                aws_request_id=self._exchange.aws_request_id,
                request_id=self._exchange.request_id,
                streaming=True,
            )
            self._exchange.function_error = complete.error_code
            error = FunctionFailed(detail=f"{self._function}: {complete.error_code}")
            if self._head_sent:
                self._cut("function_error", error)
            else:
                self._fail_before_head(error, "function_error")
            return
        try:
            head, body = self._parser.finish()
        except MalformedReply as error:
            self._fail_before_head(error, "malformed")
            return
        self._forward(head, body)
        if not self._ended:
            self._finish()

    def stream_failed(self, error: GatewayError) -> None:
        if self._ended:
            return
        if self._head_sent:
            self._cut("truncated", error)
        else:
            self._fail_before_head(error, "truncated")

    # What the request's channel asks.

    def pauseProducing(self) -> None:
        self._paused = True
        if not self._ended:
            self._stream.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if not self._ended:
            self._stream.resumeProducing()

    def stopProducing(self) -> None:
        """
        The client connection is going away: abandon the upstream.

        The resource hears of it through the request's notifyFinish and
        cancels L{done}.
        """
        if not self._ended:
            self._abandon()

    # Inside.

    def _forward(self, head: ResponseHead | None, body: bytes) -> None:
        if head is not None:
            self._write_head(head)
        if self._ended or not self._head_sent:
            return
        if body:
            self._request.write(body)
            self._exchange.bytes_out += len(body)
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._settings.idle_timeout)

    def _write_head(self, head: ResponseHead) -> None:
        request = self._request
        request.registerProducer(self, True)
        self._registered = True
        request.setResponseCode(head.status)
        headers = request.responseHeaders
        sent = head.headers if self._head_headers is None else self._head_headers(head.headers)
        for name, value in sent:
            headers.addRawHeader(name.encode("ascii"), value.encode("utf-8"))
        headers.setRawHeaders(b"x-request-id", [self._exchange.request_id.encode("ascii")])
        # No Content-Length: Twisted sends the body chunked, and an empty
        # write puts the head on the wire now, not with the first body bytes.
        request.write(b"")
        self._head_sent = True
        self._exchange.status = head.status
        self._exchange.first_byte = self._clock.seconds()
        self._idle = self._clock.callLater(self._settings.idle_timeout, self._idle_expired)
        self.head_written.callback(None)
        if request.method == b"HEAD" and not self._ended:
            # Nothing of the body would be sent: do not make Lambda produce it.
            self._stream.stopProducing()
            self._finish()

    def _finish(self) -> None:
        self._end("complete")
        self._unregister()
        self._request.finish()
        self.done.callback(None)

    def _fail_before_head(self, error: GatewayError, outcome: str) -> None:
        self._end(outcome)
        self.head_written.errback(error)

    def _cut(self, outcome: str, error: GatewayError, *, idle: bool = False) -> None:
        """
        End a response whose head was sent by cutting the connection.
        """
        self._end(outcome)
        if idle:
            self._stream.stopProducing()
        exchange = self._exchange
        exchange.outcome = "error"
        exchange.error = error.message
        if isinstance(error, InvokeFailed):
            exchange.error_code = error.code
        self.log.warn(
            "stream from {function} cut after {bytes_out} bytes ({outcome}): {error} {detail}",
            function=self._function,
            bytes_out=exchange.bytes_out,
            outcome=outcome,
            error=error.message,
            detail=error.detail,
            request_id=exchange.request_id,
        )
        self._unregister()
        self.done.callback(None)
        # Idle: everything written went out long ago, or the client stopped
        # reading; either way there is nothing left worth flushing.
        cut_connection(self._request, self._clock, abort=idle, grace=self._settings.idle_timeout)

    def _idle_expired(self) -> None:
        self._idle = None
        side = "the client read nothing" if self._paused else "the function sent nothing"
        error = InvokeTimeout("stream idle", detail=f"{side} for {self._settings.idle_timeout}s")
        self._cut("idle_timeout", error, idle=True)

    def _cancelled(self, deferred: Deferred[None]) -> None:
        if not self._ended:
            self._abandon()

    def _abandon(self) -> None:
        self._end("client_gone")
        self._stream.stopProducing()
        self._unregister()

    def _end(self, outcome: str) -> None:
        self._ended = True
        self._exchange.stream_outcome = outcome
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            if self._request.channel is not None:
                self._request.unregisterProducer()


def cut_connection(
    request: Request, clock: IReactorTime, *, abort: bool = False, grace: float = 30.0
) -> None:
    """
    End a response that has started without its final chunk.

    HTTP/1.1: the connection is closed, so the chunked body never gets its
    terminating chunk.  Closing flushes what was written first (Twisted
    sends writes on the next reactor turn, so an abort now could drop even
    the head), but a client that has stopped reading would keep the
    connection open forever: after C{grace} seconds it is aborted.  With
    C{abort}, it is aborted at once.  HTTP/2: only this stream is reset.
    """
    channel: Any = request.channel
    if channel is None:
        return
    transport = getattr(channel, "transport", None)
    if transport is None:
        channel.abortConnection()
        return
    if abort:
        transport.abortConnection()
        return
    force = clock.callLater(grace, transport.abortConnection)

    def closed(result: object) -> None:
        if force.active():
            force.cancel()

    request.notifyFinish().addBoth(closed)
    transport.loseConnection()
