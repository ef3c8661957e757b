"""
The Lambda Runtime API for one worker process, as a twisted.web resource.

Lambda runs every runtime, AWS's own and custom ones, through this small
HTTP API: the runtime long-polls ``GET /2018-06-01/runtime/invocation/next``
for an event and posts the result (or the error) back under the request id
it was given.  Serving it ourselves, rather than calling handlers, means a
local function runs in the real runtime client with the real context object,
error payloads and environment.

Each worker has its own listening address and its own L{RuntimeAPI}, so the
resource never has to tell two runtimes apart: it holds at most one waiting
poll, one event not yet handed out and one event in progress.  It knows
nothing about processes or time; the worker enforces deadlines and reports
a dead process with L{RuntimeAPI.fail}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ..errors import InvokeFailed

MAX_RESPONSE_SIZE = 6 * 1024 * 1024
"""Lambda's limit on a synchronous response; larger ones are a function error."""

_PREFIX = b"/2018-06-01/runtime/"
_NEXT = b"invocation/next"
_INIT_ERROR = b"init/error"
_ERROR_TYPE = b"Lambda-Runtime-Function-Error-Type"


@dataclass(frozen=True, slots=True)
class Invocation:
    """
    One event for the runtime, with the headers Lambda sends along with it.

    ``gateway_request_id`` is only for tagging the worker's log lines; the
    runtime never sees it except inside the event.
    """

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    gateway_request_id: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    What the runtime reported for one invocation.

    ``error_type`` is None for a response and the error type (possibly
    empty) for a function error, whose document is then ``payload``.  A
    worker whose outcome is not ``reusable`` must not get another event.
    """

    payload: bytes
    error_type: str | None = None
    reusable: bool = True


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
    L{withdraw}.  ``on_init_error`` gets the body and error type of an
    ``init/error`` post; ``on_initialized`` is called at the runtime's first
    poll, when its initialization is done.
    """

    isLeaf = True

    def __init__(
        self, on_init_error: InitErrorHandler, on_initialized: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__()
        self._on_init_error = on_init_error
        self._on_initialized = on_initialized
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

        Its Deferred fails with ``reason``, by default L{WithdrawnError}.
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
    Set the status and headers of a JSON answer; the caller returns ``body``.
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
