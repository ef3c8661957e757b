"""
The gateway's HTTP/1.1 channel: requests framed by llhttp, fed to twisted.web.

Every request the daemon serves over HTTP/1.1 is read by llhttp, Node.js's
parser, in its strict mode, through C{httptools}: the request line, the
header fields, Content-Length and chunked bodies (chunk extensions are
skipped, trailers dropped).  L{twisted_lambdagw.server.framing} adds the rules llhttp
leaves to a server (Transfer-Encoding, Host, the target's form), and each
request is then handed to twisted.web's C{Request}, as twisted.web's own
channel would hand it: the same C{Request}, C{Site} and resources.

Pipelined requests are served one at a time, in order.  llhttp reads ahead:
a request that arrives while another is being served waits, parsed, in a
queue, and is handed over when the one before it is done, in a loop (never
by recursion).  Past L{MAX_PIPELINED_BYTES} of such requests the channel
stops reading from the socket until the queue drains.

A request after one that asked to close (C{Connection: close}, in any list
form or on any line, or any HTTP/1.0 request) is never read.  Every request
the channel refuses is answered with the gateway's JSON error and an
C{X-Request-ID}, and the connection is closed: a head llhttp cannot read or
L{twisted_lambdagw.server.framing} refuses (400, 505), a body too large (413), a
request line longer than L{MAX_HEAD_BYTES} (414), more than
L{MAX_HEADER_FIELDS} fields or L{MAX_HEAD_BYTES} bytes of head (431), or a
head not complete within C{header_timeout} of its first byte (408; a
slowloris's only way to hold a connection is to send nothing, and then the
idle timeout applies).  A refusal behind a request being served waits for
that request's answer.

Each response head leaves in one write with the body's first bytes, sent
at once rather than on the reactor's next turn (see L{GatewayChannel.writeHeaders}).
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from typing import Any

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.http_headers import Headers
from twisted.web.iweb import INonQueuedRequestFactory

from twisted_lambdagw.net.headers import checked_headers, raw_values
from twisted_lambdagw.net.sending import send_now

from .framing import Head, Refused, check_head
from .request import GatewayRequest
from .timed_channel import TimedChannel

MAX_HEADER_FIELDS = 100
"""Header lines one request may send (Apache's LimitRequestFields)."""
MAX_HEAD_BYTES = 32 * 1024
"""Bytes of request line and header lines one request may send."""
MAX_PIPELINED_BYTES = 64 * 1024
"""Bytes of requests read while one is served, past which reading pauses."""
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
_LINE_ROOM = 1024
"""Bytes a head spread over reads may pass its limit by before the spread is refused."""

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    505: b"HTTP Version Not Supported",
}


class _Halt(Exception):
    """
    Raised in a parser callback to stop llhttp: nothing more is read.
    """


class _Message:
    """
    A request as llhttp reads it: its head, and its body until it is handed over.
    """

    __slots__ = ("body", "complete", "head", "keep_alive", "request")

    def __init__(self, head: Head, keep_alive: bool) -> None:
        self.head = head
        self.keep_alive = keep_alive
        self.body: list[bytes] = []
        self.complete = False
        self.request: Request | None = None
        """Its twisted.web Request, once handed over."""


class GatewayChannel(TimedChannel):
    """
    An HTTPChannel whose requests are framed by llhttp, with deadlines and JSON refusals.
    """

    log = Logger()
    max_header_fields = MAX_HEADER_FIELDS
    max_head_bytes = MAX_HEAD_BYTES
    max_pipelined_bytes = MAX_PIPELINED_BYTES

    def __init__(
        self,
        header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__()
        self.header_timeout = header_timeout
        self._clock = clock
        self._head_deadline: float | None = None
        self._idle_deadline: float | None = None
        self._timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._refused = False
        self._requests_release: bool | None = None
        self._secure: tuple[object, bool] | None = None
        """The transport L{isSecure} last looked at, and its answer."""
        self._host: tuple[object, IAddress] | None = None
        self._peer: tuple[object, IAddress] | None = None
        """The transport L{getHost} (L{getPeer}) last asked, and its answer."""

        self._parser = HttpRequestParser(self)
        self._halted = False
        """Whether llhttp was stopped: nothing more is read on this connection."""
        self._in_head = False
        """Whether llhttp is inside a request head."""
        self._head_new = False
        """Whether the head llhttp is in began in the read being parsed."""
        self._url: list[bytes] = []
        self._fields: dict[bytes, list[bytes]] = {}
        self._field_count = 0
        self._head_bytes = 0
        self._spanning = 0
        """Bytes of reads after the first that a head spread over."""
        self._message: _Message | None = None
        """The request whose body llhttp is reading."""
        self._queue: deque[_Message | Refused] = deque()
        """Requests read while another is served, in order, and a refusal to send after them."""
        self._backlog = 0
        """Bytes read while a request is served."""
        self._held_back = False
        """Whether reading is paused for the backlog."""
        self._pumping = False

    # Reading: llhttp calls these as it reads.

    def dataReceived(self, data: bytes) -> None:
        if self._halted or self._refused:
            return
        self.resetTimeout()
        if self._handlingRequest or self._queue:
            self._backlog += len(data)
            if self._backlog > self.max_pipelined_bytes and not self._held_back:
                self._held_back = True
                self._networkProducer.pauseProducing()
        elif self._message is None and self._head_deadline is None:
            self._start_header_timer()
        in_head = self._in_head
        self._head_new = False
        parser = self._parser
        while data:
            try:
                parser.feed_data(data)
            except HttpParserUpgrade as upgrade:
                # An Upgrade (h2c, websocket) is not taken: the request was
                # served as a plain one and reading goes on after it.
                data = data[upgrade.args[0] :]
                continue
            except HttpParserCallbackError as error:
                if not (self._halted or isinstance(error.__context__, _Halt)):
                    self.log.failure(
                        "reading a request failed", Failure(error.__context__ or error)
                    )
                    self._fail(500, "internal error")
            except HttpParserError as error:
                if not self._halted:  # else: llhttp refusing what follows a close
                    self._fail(*_parse_error(error))
            break
        if self._in_head and not self._halted:
            if in_head and not self._head_new:
                self._spanning += len(data)
            # A field's name and value reach on_header only when whole, and
            # httptools keeps the parts until then: they are counted here.
            # (With room for a request line, which on_url counts exactly.)
            if self._spanning > self.max_head_bytes + _LINE_ROOM:
                self._fail(431, "request header fields too large")

    def on_message_begin(self) -> None:
        if self._halted:
            raise _Halt
        self._in_head = self._head_new = True
        self._url = []
        self._fields = {}
        self._field_count = self._head_bytes = self._spanning = 0
        if not self.requests:
            self._start_header_timer()

    def on_url(self, part: bytes) -> None:
        self._url.append(part)
        self._head_bytes += len(part)
        if self._head_bytes > self.max_head_bytes:
            self._stop(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if not self._in_head:
            # A trailer field of a chunked body: counted, and dropped.
            if self._head_bytes > self.max_head_bytes:
                self._stop(431, "request trailer fields too large")
            return
        self._field_count += 1
        if self._field_count > self.max_header_fields:
            self._stop(431, "too many request header fields")
        if self._head_bytes > self.max_head_bytes:
            self._stop(431, "request header fields too large")
        key = name.lower()
        value = value.strip(b" \t")
        values = self._fields.get(key)
        if values is None:
            self._fields[key] = [value]
        else:
            values.append(value)

    def on_headers_complete(self) -> None:
        if self._halted:
            raise _Halt
        self._in_head = False
        self._head_deadline = None
        parser = self._parser
        try:
            head = check_head(
                parser.get_method(), b"".join(self._url), parser.get_http_version(), self._fields
            )
        except Refused as refused:
            self._stop(refused.status, refused.message)
        if parser.should_upgrade() and head.length != 0:
            # llhttp would not read the body of an Upgrade request.
            self._stop(400, "a request body with Upgrade")
        self._head_bytes = 0
        message = self._message = _Message(
            head, head.version == b"HTTP/1.1" and parser.should_keep_alive()
        )
        if not (self.requests or self._queue):
            self._hand_over(message)
            if self._halted:
                raise _Halt
        else:
            self._queue.append(message)

    def on_body(self, data: bytes) -> None:
        message = self._message
        if message is None or self._halted:
            raise _Halt
        request = message.request
        if request is None:
            message.body.append(data)
            return
        request.handleContentChunk(data)
        if getattr(request, "body_too_large", False):
            self._too_large(message)
            raise _Halt

    def on_message_complete(self) -> None:
        message = self._message
        if message is None or self._halted:
            raise _Halt
        self._message = None
        message.complete = True
        if not message.keep_alive:
            # Nothing after a request that closes the connection is read.
            self._halted = True
        if message.request is not None:
            self._body_received(message)

    # Handing requests to twisted.web, one at a time.

    def _hand_over(self, message: _Message) -> None:
        """
        Make the twisted.web Request for C{message} and give it what was read.
        """
        head = message.head
        self.resetTimeout()
        factory = self.requestFactory
        if INonQueuedRequestFactory.providedBy(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        message.request = request
        request.requestHeaders = checked_headers(head.fields)
        request.parseCookies()
        self.persistent = message.keep_alive
        if not message.keep_alive and head.version == b"HTTP/1.1":
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.length = head.length
        request.gotLength(head.length)
        if getattr(request, "body_too_large", False):
            self._too_large(message)
            return
        if head.version == b"HTTP/1.1" and not message.complete:
            expect = raw_values(request.requestHeaders, b"expect")
            if expect and expect[0].lower() == b"100-continue":
                self._send100Continue()
        for chunk in message.body:
            request.handleContentChunk(chunk)
            if getattr(request, "body_too_large", False):
                self._too_large(message)
                return
        message.body = []
        if message.complete:
            self._body_received(message)

    def _too_large(self, message: _Message) -> None:
        # The request answers 413 and closes: the rest is never read.
        self._halted = True
        if self._message is message:
            self._message = None
        if not message.complete:
            message.complete = True
            self._body_received(message)

    def _body_received(self, message: _Message) -> None:
        request = message.request
        assert request is not None
        if getattr(request, "_received", False):
            return
        head = message.head
        self.length = 0
        if self.timeOut:
            # No idle timeout while the request is served.
            self._savedTimeOut = self.setTimeout(None)
        self._handlingRequest = True
        request.requestReceived(head.method, head.path, head.version)

    def allContentReceived(self) -> None:
        # GatewayRequest calls this after refusing a chunked body: done here
        # already, when its chunk was read.
        message = self._message
        if message is not None and message.request is not None:
            self._too_large(message)

    def requestDone(self, request: Any) -> None:
        if request is not self.requests[0]:
            raise TypeError
        del self.requests[0]
        if not self.persistent:
            self.loseConnection()
            return
        self._handlingRequest = False
        if self._savedTimeOut:
            self.setTimeout(self._savedTimeOut)
        self._pump()

    def _pump(self) -> None:
        """
        Hand over the requests read while others were served, in order, in a loop.
        """
        if self._pumping:
            return  # a request done while handed over: the loop below goes on
        self._pumping = True
        try:
            queue = self._queue
            while queue and not self.requests and self.persistent and not self._refused:
                message = queue.popleft()
                if isinstance(message, Refused):
                    self._refuse(message.status, message.message)
                    return
                self._hand_over(message)
        finally:
            self._pumping = False
        if not queue:
            self._backlog = 0
        if self._held_back and self._backlog <= self.max_pipelined_bytes:
            self._held_back = False
            if not self._waitingForTransport:
                self._networkProducer.resumeProducing()
        elif not self._held_back and not self._waitingForTransport:
            self._networkProducer.resumeProducing()
        if self._in_head and not self.requests:
            self._start_header_timer()

    def resumeProducing(self) -> None:
        # The transport has room again; reading stays paused for a backlog.
        self._waitingForTransport = False
        if self._requestProducer is not None:
            self._requestProducer.resumeProducing()
        if not (self._handlingRequest or self._held_back):
            self._networkProducer.resumeProducing()

    # Refusals.

    def _stop(self, status: int, message: str) -> None:
        """
        Refuse the request llhttp is reading, and stop it (from its callbacks).
        """
        self._fail(status, message)
        raise _Halt

    def _fail(self, status: int, message: str) -> None:
        """
        Refuse the request being read: now, or after the answers before it.
        """
        self._halted = True
        reading, self._message = self._message, None
        if reading is not None and reading.request is not None:
            # The request being read was handed over, its body unfinished:
            # it is refused, with nothing before it to wait for.
            self._refuse(status, message)
        elif self.requests or self._queue:
            self._queue.append(Refused(status, message))
        else:
            self._refuse(status, message)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's Request calls this for a form body it cannot read.
        self._refuse(400, "bad request")

    # A response leaves in one send: twisted.web's Request.write writes the
    # head (writeHeaders) and then the body's first bytes (write, or
    # writeSequence when chunked), and the head is held in between.  Whatever
    # that Request.write call did not send with a body, it sends at its end
    # (GatewayRequest.write calls send_held_head), so a head never waits for
    # a later write.  Together they are a whole message: sent at once
    # (send_now), not queued for the reactor's next turn.  Later writes, a
    # streamed body's, are queued as usual.

    held_head = b""
    """A response head written and not yet sent."""

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        # Built here rather than by twisted.web's writeSequence of the ~30
        # pieces, which checks each in a Python call.
        if not isinstance(headers, Headers) or self.transport is None:
            super().writeHeaders(version, code, reason, headers)
            return
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        if self._releases_heads():
            self.held_head = b"".join(head)
        else:
            self.transport.write(b"".join(head))

    def _releases_heads(self) -> bool:
        # Only a GatewayRequest sends a held head at the end of its write; an
        # embedder's own request factory gets its head written at once.
        releases = self._requests_release
        if releases is None:
            factory = self.requestFactory
            releases = isinstance(factory, type) and issubclass(factory, GatewayRequest)
            self._requests_release = releases
        return releases

    def write(self, data: bytes) -> None:
        head = self.held_head
        if head:
            self.held_head = b""
            assert self.transport is not None  # writeHeaders held it for this transport
            send_now(self.transport, head + data)
        else:
            super().write(data)

    def writeSequence(self, iovec: Any) -> None:
        if self.held_head:
            self.write(b"".join(iovec))
        else:
            super().writeSequence(iovec)

    def send_held_head(self) -> None:
        """
        Send the response head if it is still held: no body came with it.
        """
        if self.held_head:
            self.write(b"")

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel_header_timer()
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self._abort_timer = None
        super().connectionLost(reason)
        # After the base class, whose setTimeout(None) may leave it running.
        self._cancel_timer()

    def _header_deadline(self) -> None:
        self.log.info(
            "no complete request head from {peer} within {timeout}s; closing",
            peer=str(self.transport.getPeer()) if self.transport is not None else "",
            timeout=self.header_timeout,
        )
        self._refuse(408, "request headers not received in time")

    def _refuse(self, status: int, message: str) -> None:
        """
        Answer with a JSON error and close; nothing more is read.
        """
        if self._refused or self.transport is None:
            return
        self._refused = True
        self._cancel_header_timer()
        request_id = str(uuid.uuid4())
        body = json.dumps({"error": message, "request_id": request_id}).encode("utf-8")
        head = [
            b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
            b"Content-Type: application/json",
            b"Content-Length: %d" % (len(body),),
            b"X-Request-ID: " + request_id.encode("ascii"),
            b"Connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if status != 408:
            self.log.info(
                "refused a request from {peer}: {status} {error}",
                peer=str(self.transport.getPeer()),
                status=status,
                error=message,
                request_id=request_id,
            )
        self.loseConnection()
        # A client that does not read may keep even a closing connection:
        # after abortTimeout it is cut.
        if self.abortTimeout is not None:
            self._abort_timer = self.callLater(self.abortTimeout, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()


def _parse_error(error: HttpParserError) -> tuple[int, str]:
    """
    The status and message for a request llhttp could not read.
    """
    reason = str(error)
    if reason == "Chunk size overflow":
        # Over 2**64 bytes announced: over any body size limit.
        return 413, "request body too large"
    return 400, f"malformed request: {reason}"
