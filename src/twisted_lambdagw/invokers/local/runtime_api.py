"""
The Lambda Runtime API for one worker process, as a twisted.web resource.

Lambda runs every runtime, AWS's own and custom ones, through this small
HTTP API: the runtime long-polls C{GET /2018-06-01/runtime/invocation/next}
for an event and posts the result (or the error) back under the request id
it was given.  Serving it ourselves, rather than calling handlers, means a
local function runs in the real runtime client with the real context object,
error payloads and environment.

Each worker has its own listening address and its own L{RuntimeAPI}, so the
resource never has to tell two runtimes apart: it holds at most one waiting
poll, one event not yet handed out and one event in progress.  It knows
nothing about processes or time; the worker enforces deadlines and reports
a dead process with L{RuntimeAPI.fail}.

Streamed responses: a runtime may post its response with
C{Lambda-Runtime-Function-Response-Mode: streaming} and a chunked body,
and report an error after the first byte in the C{Lambda-Runtime-Function-
Error-Type} and C{-Error-Body} (base64) trailers.  twisted.web normally
reads a whole body before rendering, so L{RuntimeRequest} hands such a body
to the invocation's L{StreamSink} piece by piece as it arrives, and lets the
sink pause reading it.  Invocations without a sink (routes without
C{stream = yes}) get a streamed post as one buffered response, as Lambda's
Invoke API does.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_lambdagw._compat import channel_path, trailer_lines, transfer_decoder
from twisted_lambdagw.core.errors import InvokeFailed

MAX_RESPONSE_SIZE = 6 * 1024 * 1024
"""Lambda's limit on a synchronous response; larger ones are a function error."""

MAX_STREAMED_RESPONSE_SIZE = 200 * 1024 * 1024
"""Lambda's limit on a streamed response; the stream is cut past it."""

_PREFIX = b"/2018-06-01/runtime/"
_NEXT = b"invocation/next"
_INIT_ERROR = b"init/error"
_ERROR_TYPE = b"Lambda-Runtime-Function-Error-Type"
_ERROR_BODY = b"Lambda-Runtime-Function-Error-Body"
_RESPONSE_MODE = b"Lambda-Runtime-Function-Response-Mode"


class StreamSink(Protocol):
    """
    Where a streamed response goes while the runtime writes it.
    """

    def begin(self, producer: IPushProducer) -> None:
        """
        The runtime started streaming; C{producer} pauses, resumes and
        stops (aborts) reading its response body.
        """
        ...

    def data(self, data: bytes) -> None:
        """
        The next piece of the response body.
        """
        ...


@dataclass(frozen=True, slots=True)
class Invocation:
    """
    One event for the runtime, with the headers Lambda sends along with it.

    C{gateway_request_id} is only for tagging the worker's log lines; the
    runtime never sees it except inside the event.
    """

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    gateway_request_id: str = ""
    stream: StreamSink | None = None
    """Set when the caller wants a streamed response passed on as it comes."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    What the runtime reported for one invocation.

    C{error_type} is None for a response and the error type (possibly
    empty) for a function error, whose document is then C{payload}.  A
    worker whose outcome is not C{reusable} must not get another event.
    """

    payload: bytes
    error_type: str | None = None
    reusable: bool = True
    streamed: bool = False
    """The response body went to the invocation's stream; C{payload} is only an error document."""


class WithdrawnError(Exception):
    """
    The event was taken back before the runtime asked for it.
    """


InitErrorHandler = Callable[[bytes, str | None], None]


class RuntimeAPI(Resource):
    """
    The Runtime API endpoints for a single runtime process.

    L{submit} hands over an event and returns a Deferred that fires with the
    runtime's L{Outcome}; it errbacks with L{InvokeFailed} when the runtime
    breaks the protocol or L{fail} is called, and with L{WithdrawnError} after
    L{withdraw}.  C{on_init_error} gets the body and error type of an
    C{init/error} post; C{on_initialized} is called at the runtime's first
    poll, when its initialization is done; C{on_stream_started} when the
    runtime starts streaming a response to an invocation's sink.
    """

    isLeaf = True

    def __init__(
        self,
        on_init_error: InitErrorHandler,
        on_initialized: Callable[[], None] = lambda: None,
        on_stream_started: Callable[[], None] = lambda: None,
        max_streamed_size: int = MAX_STREAMED_RESPONSE_SIZE,
    ) -> None:
        super().__init__()
        self._on_init_error = on_init_error
        self._on_initialized = on_initialized
        self._on_stream_started = on_stream_started
        self._max_streamed_size = max_streamed_size
        self._streaming: RuntimeRequest | None = None
        self._streamed = 0
        self._poll: Request | None = None
        self._pending: tuple[Invocation, Deferred[Outcome]] | None = None
        self._current: tuple[Invocation, Deferred[Outcome]] | None = None
        self._failed: Exception | None = None
        self.initialized = False
        """True once the runtime has asked for its first event."""

    @property
    def busy(self) -> bool:
        """
        An event is waiting for the runtime or being handled by it.
        """
        return self._pending is not None or self._current is not None

    def submit(self, invocation: Invocation) -> Deferred[Outcome]:
        """
        Give the runtime its next event.
        """
        if self.busy:
            raise RuntimeError("one invocation at a time per runtime")
        done: Deferred[Outcome] = Deferred()
        if self._failed is not None:
            done.errback(self._failed)
            return done
        self._pending = (invocation, done)
        if self._poll is not None:
            poll, self._poll = self._poll, None
            self._deliver(poll)
        return done

    @property
    def undelivered(self) -> bool:
        """
        An event was submitted and the runtime has not received it yet.
        """
        return self._pending is not None

    def withdraw(self, reason: Exception | None = None) -> bool:
        """
        Take back the submitted event if the runtime has not received it yet.

        Its Deferred fails with C{reason}, by default L{WithdrawnError}.
        """
        if self._pending is None:
            return False
        _, done = self._pending
        self._pending = None
        done.errback(reason if reason is not None else WithdrawnError())
        return True

    def fail(self, reason: Exception) -> None:
        """
        The runtime is gone or must be given up: fail its event, now and later.
        """
        if self._failed is None:
            self._failed = reason
        slots = [slot for slot in (self._pending, self._current) if slot is not None]
        self._pending = self._current = None
        self._stop_streaming()
        for _, done in slots:
            done.errback(reason)

    def render_GET(self, request: Request) -> bytes | int:
        if request.path != _PREFIX + _NEXT:
            return _reply(request, 404, _error("UnknownPath", "no such endpoint"))
        if self._current is not None:
            invocation, done = self._current
            self._current = None
            done.errback(
                InvokeFailed(
                    detail=f"the runtime asked for the next event without answering"
                    f" invocation {invocation.request_id}"
                )
            )
        if not self.initialized:
            self.initialized = True
            self._on_initialized()
        if self._poll is not None:
            _finish(self._poll, 400, _error("InvalidStateTransition", "superseded by a new poll"))
        self._poll = request
        request.notifyFinish().addErrback(self._poll_lost, request)
        if self._pending is not None:
            self._poll = None
            self._deliver(request)
        return NOT_DONE_YET

    def render_POST(self, request: Request) -> bytes:
        path = request.path
        if path == _PREFIX + _INIT_ERROR:
            return self._init_error(request)
        parts = path[len(_PREFIX) :].split(b"/") if path.startswith(_PREFIX) else []
        if len(parts) != 3 or parts[0] != b"invocation" or parts[2] not in (b"response", b"error"):
            return _reply(request, 404, _error("UnknownPath", "no such endpoint"))
        if isinstance(request, RuntimeRequest) and request.streamed:
            return self._stream_ended(request)
        if self._current is None or parts[1] != self._current[0].request_id.encode():
            return _reply(request, 400, _error("InvalidRequestID", "Invalid request ID"))
        _, done = self._current
        self._current = None
        body = _body(request)
        if parts[2] == b"error":
            error_type = _header(request, _ERROR_TYPE)
            payload = body or _error(error_type or "Unknown", "")
            done.callback(Outcome(payload, error_type or ""))
        elif len(body) > MAX_RESPONSE_SIZE:
            message = (
                f"Response payload size ({len(body)} bytes) exceeded maximum allowed"
                f" payload size ({MAX_RESPONSE_SIZE} bytes)."
            )
            error = _error("Function.ResponseSizeTooLarge", message)
            done.callback(Outcome(error, "Function.ResponseSizeTooLarge", reusable=False))
            return _reply(request, 413, _error("RequestEntityTooLarge", message))
        else:
            done.callback(Outcome(body))
        return _reply(request, 202, b'{"status":"OK"}')

    def stream_begins(self, request: RuntimeRequest, path: bytes) -> bool:
        """
        A streamed post to C{path} has started: pass its body on if it is the
        response of the current invocation and that invocation has a sink.
        """
        current = self._current
        if current is None or current[0].stream is None or self._streaming is not None:
            return False
        response = _PREFIX + b"invocation/" + current[0].request_id.encode() + b"/response"
        if path != response:
            return False
        self._streaming = request
        self._streamed = 0
        current[0].stream.begin(_RequestBody(request))
        self._on_stream_started()
        return True

    def stream_data(self, request: RuntimeRequest, data: bytes) -> None:
        """
        The next piece of a streamed response body.
        """
        if request is not self._streaming or self._current is None:
            return
        invocation, done = self._current
        self._streamed += len(data)
        if self._streamed > self._max_streamed_size:
            self._current = None
            self._stop_streaming()
            done.errback(
                InvokeFailed(
                    detail=f"the streamed response of {invocation.request_id} exceeded"
                    f" {self._max_streamed_size} bytes"
                )
            )
            return
        assert invocation.stream is not None
        invocation.stream.data(data)

    def stream_lost(self, request: RuntimeRequest, reason: Failure) -> None:
        """
        The runtime's connection closed before its streamed response ended.
        """
        if request is not self._streaming:
            return
        self._streaming = None
        if self._current is not None:
            invocation, done = self._current
            self._current = None
            done.errback(
                InvokeFailed(
                    detail=f"the streamed response of {invocation.request_id} ended before"
                    f" its last chunk: {reason.getErrorMessage()}"
                )
            )

    def _stream_ended(self, request: RuntimeRequest) -> bytes:
        if request is not self._streaming or self._current is None:
            return _reply(request, 400, _error("InvalidRequestID", "Invalid request ID"))
        self._streaming = None
        _, done = self._current
        self._current = None
        error_type = request.trailer(_ERROR_TYPE)
        if error_type is None:
            done.callback(Outcome(b"", streamed=True))
        else:
            raw = request.trailer(_ERROR_BODY) or ""
            try:
                document = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                document = raw.encode("utf-8", "replace")
            done.callback(Outcome(document or _error(error_type, ""), error_type, streamed=True))
        return _reply(request, 202, b'{"status":"OK"}')

    def _stop_streaming(self) -> None:
        streaming, self._streaming = self._streaming, None
        if streaming is not None:
            _RequestBody(streaming).stopProducing()

    def _init_error(self, request: Request) -> bytes:
        if self.initialized:
            return _reply(request, 403, _error("InvalidStateTransition", "already initialized"))
        self._on_init_error(_body(request), _header(request, _ERROR_TYPE))
        return _reply(request, 202, b'{"status":"OK"}')

    def _deliver(self, request: Request) -> None:
        assert self._pending is not None
        self._current = self._pending
        self._pending = None
        invocation = self._current[0]
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(invocation.payload))
        request.setHeader(b"Lambda-Runtime-Aws-Request-Id", invocation.request_id.encode())
        request.setHeader(b"Lambda-Runtime-Deadline-Ms", b"%d" % invocation.deadline_ms)
        request.setHeader(b"Lambda-Runtime-Invoked-Function-Arn", invocation.function_arn.encode())
        request.setHeader(b"Lambda-Runtime-Trace-Id", invocation.trace_id.encode())
        request.write(invocation.payload)
        request.finish()

    def _poll_lost(self, reason: Failure, request: Request) -> None:
        if self._poll is request:
            self._poll = None


class RuntimeRequest(Request):
    """
    A Runtime API request whose streamed response body is passed on as it arrives.

    twisted.web gives a request its path only once the whole body is in, so
    the path and the trailers are read from the channel's request line and
    chunked decoder (twisted.web.http.HTTPChannel internals, stable for many
    releases; without them a streamed post is simply buffered).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streamed = False
        """The body was handed to a stream sink instead of being stored."""
        self._complete = False
        self._decoder: object = None
        self._api: RuntimeAPI | None = None

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        mode = self.requestHeaders.getRawHeaders(_RESPONSE_MODE) or [b""]
        channel = self.channel
        api = getattr(getattr(channel, "site", None), "resource", None)
        path = channel_path(channel)
        if mode[-1].strip().lower() != b"streaming" or not isinstance(api, RuntimeAPI):
            return
        if path is not None and api.stream_begins(self, path.split(b"?", 1)[0]):
            self.streamed = True
            self._api = api
            self._decoder = transfer_decoder(channel)

    def handleContentChunk(self, data: bytes) -> None:
        if self._api is not None:
            self._api.stream_data(self, data)
        else:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._complete = True
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        if self._api is not None and not self._complete:
            self._api.stream_lost(self, reason)
        super().connectionLost(reason)

    def trailer(self, name: bytes) -> str | None:
        """
        The last value of a trailer field of a streamed body, if it had one.
        """
        value = None
        for line in trailer_lines(self._decoder):
            field, _, rest = bytes(line).partition(b":")
            if field.strip().lower() == name.lower():
                value = rest.strip().decode("utf-8", "replace")
        return value


@implementer(IPushProducer)
class _RequestBody:
    """
    Flow control over the body of one request: the runtime's connection.
    """

    def __init__(self, request: Request) -> None:
        self._request = request

    def _transport(self) -> Any:
        channel = self._request.channel
        return channel.transport if channel is not None else None

    def pauseProducing(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.pauseProducing()

    def resumeProducing(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.resumeProducing()

    def stopProducing(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.abortConnection()


def _body(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read()
    return data


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("utf-8", "replace") if value is not None else None


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def _reply(request: Request, status: int, body: bytes) -> bytes:
    """
    Set the status and headers of a JSON answer; the caller returns C{body}.
    """
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def _finish(request: Request, status: int, body: bytes) -> None:
    """
    Answer a request that is being held open.
    """
    request.write(_reply(request, status, body))
    request.finish()
