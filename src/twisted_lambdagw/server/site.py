"""
The gateway's Site and its HTTP/1.1 channel: header limits and timeouts.

twisted.web's HTTPChannel restarts its idle timer on every byte received, so
a client that sends its headers one byte at a time (slowloris) could hold a
connection open for as long as it likes.  L{GatewayChannel} adds a header
deadline: from the first byte of a request, the whole head (request line and
headers) must arrive within ``header_timeout``, or the client gets a 408 and
the connection is closed.  Between requests the Site's idle timeout applies.

It also answers oversized heads itself, as JSON errors like every other
gateway error, instead of twisted.web's bare 400 or silent close: more than
L{MAX_HEADER_FIELDS} header lines or more than L{MAX_HEAD_BYTES} bytes of head
get 431, a request line longer than L{MAX_HEAD_BYTES} gets 414.  (A URI under
that limit but over L{twisted_lambdagw.server.resource.MAX_URI_LENGTH} gets its 414
from the resource.)  Header values with CR, LF or NUL are refused by
twisted.web itself with a 400.

Most requests arrive with their whole head in one read; such a head, when
twisted.web would take it as it is, is read in one pass instead of a line
at a time (see L{GatewayChannel._head_at_once}).  Anything unusual goes
through twisted.web's own parser, so its answers to bad requests are
unchanged.  Each response head leaves in one write with the body's first
bytes, sent at once rather than on the reactor's next turn (see
L{GatewayChannel.writeHeaders}).

HTTP/2 connections, negotiated by ALPN, are served by Twisted's H2Connection
instead: the idle timeout applies to them, and h2 enforces its own framing.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request, _GenericHTTPChannelProtocol
from twisted.web.http_headers import Headers
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_lambdagw.net.headers import TOKEN, BadHead, checked_headers, head_lines, read_fields
from twisted_lambdagw.net.sending import send_now

from .request import DEFAULT_MAX_BODY_SIZE, GatewayRequest, request_factory

MAX_HEADER_FIELDS = 100
"""Header lines one request may send (Apache's LimitRequestFields)."""
MAX_HEAD_BYTES = 32 * 1024
"""Bytes of request line and header lines one request may send."""
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
_SLACK = 1e-9
"""Seconds a deadline may be met early by: floating-point sums of times."""

_REQUEST_LINE = re.compile(b"(" + TOKEN.pattern + rb") ([\x21-\x7e]+) (HTTP/1\.[01])")
"""A request line twisted.web takes as it is (it takes a few more, the slow way)."""

_ONE_PASS = all(
    hasattr(cls, name)
    for cls, name in [
        (LineReceiver, "_buffer"),
        (LineReceiver, "_busyReceiving"),
        (LineReceiver, "line_mode"),
        (HTTPChannel, "_maybeChooseTransferDecoder"),
        (HTTPChannel, "allContentReceived"),
        (HTTPChannel, "length"),
    ]
)
"""Whether this Twisted's HTTPChannel keeps its parser state where the one-pass read expects."""

_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class GatewayChannel(HTTPChannel):
    """
    An HTTPChannel with a header deadline and JSON answers for oversized heads.
    """

    log = Logger()
    max_header_fields = MAX_HEADER_FIELDS
    max_head_bytes = MAX_HEAD_BYTES
    # twisted.web's own limits stay as a backstop behind ours, which are
    # checked first and answer with a proper status.
    MAX_LENGTH = MAX_HEAD_BYTES
    maxHeaders = MAX_HEADER_FIELDS
    totalHeadersSize = MAX_HEAD_BYTES

    def __init__(
        self,
        header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__()
        self.header_timeout = header_timeout
        self._clock = clock
        self._awaiting_head = True
        self._head_deadline: float | None = None
        self._idle_deadline: float | None = None
        self._timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._head_lines = 0
        self._head_bytes = 0
        self._refused = False
        self._requests_release: bool | None = None
        self._secure: tuple[object, bool] | None = None
        """The transport L{isSecure} last looked at, and its answer."""
        self._host: tuple[object, IAddress] | None = None
        self._peer: tuple[object, IAddress] | None = None
        """The transport L{getHost} (L{getPeer}) last asked, and its answer."""

    def isSecure(self) -> bool:
        # Asked for every request (the scheme in events and X-Forwarded-Proto);
        # the answer, an interface lookup on the transport, is kept for as
        # long as the transport is the same.
        transport = self.transport
        known = self._secure
        if known is None or known[0] is not transport:
            known = self._secure = (transport, bool(super().isSecure()))
        return known[1]

    # twisted.web's Request asks for both addresses as it is made, for every
    # request.  They do not change while the transport stays the same, and
    # TCP's transport makes a new address each time it is asked: the local
    # one with a getsockname() system call.

    def getHost(self) -> IAddress:
        transport = self.transport
        known = self._host
        if known is None or known[0] is not transport:
            known = self._host = (transport, super().getHost())
        return known[1]

    def getPeer(self) -> IAddress:
        transport = self.transport
        known = self._peer
        if known is None or known[0] is not transport:
            known = self._peer = (transport, super().getPeer())
        return known[1]

    # The header deadline and twisted.web's idle timeout (TimeoutMixin's
    # setTimeout and resetTimeout, which HTTPChannel calls around every
    # request) share one timer, moved lazily: a deadline only records a
    # time, and the timer, when it fires, acts on whichever deadline has
    # passed and sets itself again for the next one.  It is rescheduled
    # only when a deadline comes before it.  twisted.web's own timer was
    # cancelled and made again for every request, and so was the header
    # timer: with thousands of connections, that churn in the reactor's
    # heap of timed calls cost more than the timing was worth.

    def setTimeout(self, period: float | None) -> float | None:
        previous: float | None = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        if period is None:
            self._idle_deadline = None
            if self._awaiting_head and self._head_deadline is None:
                # Not around a request: the channel is being given up (the
                # connection switched to HTTP/2, or is lost).
                self._cancel_timer()
            return previous
        self._idle_deadline = self._now() + period
        self._schedule()
        return previous

    def resetTimeout(self) -> None:
        if self._idle_deadline is not None and self.timeOut is not None:
            # Later than before: the timer, when it fires, moves on to it.
            self._idle_deadline = self._now() + self.timeOut

    def _now(self) -> float:
        if self._clock is None:
            # Without a clock given, the reactor whose callLater the Site set.
            self._clock = getattr(self.callLater, "__self__", None)
            if self._clock is None:
                from twisted.internet import reactor

                self._clock = reactor
        assert self._clock is not None
        return self._clock.seconds()

    def _schedule(self) -> None:
        deadline = self._head_deadline
        idle = self._idle_deadline
        if deadline is None or (idle is not None and idle < deadline):
            deadline = idle
        if deadline is None:
            return  # a running timer will find nothing to do
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= deadline:
                return
            timer.cancel()
        self._timer = self.callLater(max(0.0, deadline - self._now()), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        now = self._now()
        if self._head_deadline is not None and now >= self._head_deadline - _SLACK:
            self._head_deadline = None
            self._header_deadline()
        elif self._idle_deadline is not None and now >= self._idle_deadline - _SLACK:
            self._idle_deadline = None
            self.timeoutConnection()
        else:
            self._schedule()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if (
            self._awaiting_head
            and self._head_bytes == 0
            and _ONE_PASS
            and not self._buffer
            and self.line_mode
            and not self._busyReceiving
            and not self.paused
            and self.persistent
            and self._head_at_once(data)
        ):
            return
        if data and self._awaiting_head and self._head_deadline is None:
            self._start_header_timer()
        super().dataReceived(data)

    # A request whose whole head came in one read, as nearly every request's
    # does, is read in one pass here rather than a line at a time (a call
    # through LineReceiver, this class and HTTPChannel for each line, and
    # three more through Headers for each header).  Only a head twisted.web
    # would take as it is goes this way; anything else (a bad request line,
    # a name that is not a token, a bare CR or LF, a folded or repeated
    # length, a chunked body, more than the limits allow, an empty line
    # first) is left, untouched, to the line-at-a-time path, so every error
    # is answered as before.  What follows the head goes where twisted.web's
    # parser would send it: the body to its decoder, the next pipelined
    # request back through here.

    def _head_at_once(self, data: bytes) -> bool:
        """
        Read the request head at the start of C{data}, if it is all there and plain.
        """
        end = data.find(b"\r\n\r\n")
        if end <= 0 or end + 4 > self.max_head_bytes:
            return False
        try:
            lines = head_lines(data[:end])
            request_line = _REQUEST_LINE.fullmatch(lines[0])
            if request_line is None or len(lines) - 1 > self.max_header_fields:
                return False
            fields = read_fields(lines[1:])
        except BadHead:
            return False
        length = fields.get(b"content-length")
        if length is not None and (len(length) > 1 or not length[0].isdigit()):
            return False
        if b"transfer-encoding" in fields:
            return False

        self.resetTimeout()
        factory = self.requestFactory
        if INonQueuedRequestFactory.providedBy(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        self._command, self._path, self._version = request_line.groups()
        request.requestHeaders = checked_headers(fields)
        if length is not None:
            self._maybeChooseTransferDecoder(b"Content-Length", length[0])
        self.allHeadersReceived()
        rest = data[end + 4 :]
        if self.length == 0:
            self.allContentReceived()
            if rest and not getattr(self.transport, "disconnecting", True):
                self.dataReceived(rest)
        elif len(rest) == self.length and self._transferDecoder is not None:
            # The whole body came with the head, and nothing after it (as for
            # nearly every POST): the request gets it as the length decoder
            # would give it, without the raw mode and the decoder between.
            request.handleContentChunk(rest)
            self.allContentReceived()
        else:
            self.setRawMode()
            if rest:
                LineReceiver.dataReceived(self, rest)
        return True

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        # (Tested here too, not only in dataReceived: the base class replays
        # pipelined bytes through this once a request is done.)
        if self._awaiting_head and self._head_deadline is None:
            self._start_header_timer()
        self._head_bytes += len(line) + 2
        if line:
            self._head_lines += 1
        if self._head_lines > self.max_header_fields + 1:
            self._refuse(431, "too many request header fields")
            return
        if self._head_bytes > self.max_head_bytes:
            self._refuse(431, "request header fields too large")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._head_lines == 0:
            self._refuse(414, "request line too long")
        else:
            self._refuse(431, "request header field too large")

    def allHeadersReceived(self) -> None:
        self._awaiting_head = False
        self._head_lines = self._head_bytes = 0
        self._cancel_header_timer()
        super().allHeadersReceived()

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

    def requestDone(self, request: Any) -> None:
        # Set before the base class replays pipelined bytes, which may hold
        # the start of the next request.
        self._awaiting_head = True
        super().requestDone(request)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel_header_timer()
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self._abort_timer = None
        super().connectionLost(reason)
        # After the base class, whose setTimeout(None) may leave it running.
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _start_header_timer(self) -> None:
        if self._awaiting_head and self._head_deadline is None and self.header_timeout:
            self._head_deadline = self._now() + self.header_timeout
            self._schedule()

    def _cancel_header_timer(self) -> None:
        self._head_deadline = None

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


class GatewaySite(Site):
    """
    A Site for the gateway resource: body cap, header deadline, idle timeout.

    twisted.web error pages never show tracebacks here, and each HTTP/1.1
    connection is served by a L{GatewayChannel}.

    twisted.web's own access log lines are off: the gateway's JSON access
    log (``[gateway] access_log``) replaces them, they would put every full
    URI, query string included, into the daemon's log, and writing them
    through the legacy log costs about as much as signing a request.  An
    embedder who wants them sets ``twisted_access_log``.
    """

    twisted_access_log = False
    """Whether twisted.web writes its combined-format line for each request."""

    def __init__(
        self,
        resource: IResource,
        *,
        reactor: Any = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        # Form bodies are not parsed into request.args: the function gets
        # every body as it came, and the parsing (through the email package)
        # cost a fifth of serving a request.
        super().__init__(
            resource, timeout=idle_timeout, reactor=reactor, parsePOSTFormSubmission=False
        )
        self.requestFactory = request_factory(max_body_size)
        self.displayTracebacks = False
        self.header_timeout = header_timeout

    def log(self, request: Request) -> None:
        if self.twisted_access_log:
            super().log(request)

    def protocol(self) -> _GenericHTTPChannelProtocol:
        # The generic protocol switches to HTTP/2 when ALPN chose it; the
        # HTTP/1.1 channel inside it is ours.
        return _GenericHTTPChannelProtocol(GatewayChannel(self.header_timeout, self.reactor))
