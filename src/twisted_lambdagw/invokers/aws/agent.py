"""
The HTTP/1.1 client under treq for Invoke calls: kept-alive connections, few steps a call.

twisted.web's C{Agent} serves every kind of HTTP exchange, and pays for it
on each one: it parses the URL again, builds a request object that writes
its head a header at a time, and reads the answer a line at a time through
C{LineReceiver}, each line a Python call or several, with a state machine of
dispatched methods and Deferreds between the parser, the protocol and the
pool.  At 50 connections that path was the largest part of the gateway's CPU.

An Invoke call is narrower: a POST of bytes already in memory to one of a
few hosts, answered with a small body whose length is given (or, for a
streamed call, a chunked event stream).  L{KeepAliveAgent} is an C{IAgent}
for exactly that.  treq stays the client the invoker calls (its
C{HTTPClient} over this agent builds the headers and wraps the response);
what changes is below it:

  - the whole request (head and body) leaves in one write, sent at once
    rather than on the reactor's next turn (L{send_now});
  - the answer is framed by llhttp, Node.js's parser, in strict mode
    (httptools' response parser): Content-Length, chunked bodies and their
    trailers, interim (1xx) answers, bodies ending with the connection;
    anything else (a length and chunking together, two lengths, a bad
    chunk size, a line break or NUL in a header) fails the call;
  - a body that came in the same read as its head is handed over whole,
    without a reader protocol (L{whole_body});
  - an answer with a C{Content-Encoding} (other than identity) fails the
    call before any of its body is taken: nothing asks for one (the
    C{Accept-Encoding} treq adds is not sent), Lambda never encodes, and
    inflating what a hostile endpoint sends is how a gzip bomb works;
  - connections are kept per (scheme, host, port) and reused last-in
    first-out, each closed after C{idle_timeout} seconds unused (one timed
    call for the whole agent, L{Deadlines});
  - endpoints come from an C{IAgentEndpointFactory} (L{EndpointCache}: one
    per host, TLS and name checks as twisted.web's).

It fails the way twisted.web's Agent fails, with the same exceptions
(C{ResponseNeverReceived}, C{ResponseFailed}, C{ResponseDone} and
C{PotentialDataLoss} for the body's end), so the invoker's retry rules read
both alike; cancelling a call closes its connection, as there.  What it
does not do, because no Invoke call needs it: bodies other than bytes in
memory (L{BytesProducer}), HEAD, pipelining, HTTP/1.0 keep-alive, upgrades.
"""

from __future__ import annotations

import re
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import URI, ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IClientRequest,
    IResponse,
)
from zope.interface import implementer

from twisted_lambdagw.net.deadlines import Deadline, Deadlines
from twisted_lambdagw.net.headers import checked_headers
from twisted_lambdagw.net.sending import send_now

MAX_HEAD_BYTES = 64 * 1024
"""The longest response head (status line and headers) read; longer is an error."""

_METHOD = re.compile(rb"[A-Z]{1,20}")
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f#]")


class BadResponse(Exception):
    """
    What the server sent is not an HTTP/1.1 response this client can read.
    """


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body already in memory, written with the request's head.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """
        Nothing to pause: everything was written at once.
        """

    def resumeProducing(self) -> None:
        """
        Nothing to resume.
        """

    def stopProducing(self) -> None:
        """
        Nothing to stop.
        """


@implementer(IClientRequest)
class _SentRequest:
    """
    What a response says was asked (C{IResponse.request}).
    """

    __slots__ = ("absoluteURI", "headers", "method")

    def __init__(self, method: bytes, uri: bytes, headers: Headers) -> None:
        self.method = method
        self.absoluteURI = uri
        self.headers = headers


class _Host:
    """
    One (scheme, host, port): its endpoint, its Host header and its idle connections.
    """

    __slots__ = ("endpoint", "factory", "host_value", "idle")

    def __init__(self, agent: KeepAliveAgent, endpoint: IStreamClientEndpoint, host_value: bytes):
        self.endpoint = endpoint
        self.host_value = host_value
        self.idle: list[_Connection] = []
        self.factory = _ConnectionFactory(agent, self)


@implementer(IAgent)
class KeepAliveAgent:
    """
    An C{IAgent} sending each request on a kept-alive HTTP/1.1 connection.

    :param endpoints: the endpoint for each (scheme, host, port).
    :param max_idle_per_host: the most idle connections kept for one host;
        one coming back to a full set is closed.
    :param idle_timeout: seconds an idle connection is kept (keep it below
        the server's own, or the server closes it first and the next request
        on it fails).
    """

    def __init__(
        self,
        reactor: Any,
        endpoints: IAgentEndpointFactory,
        max_idle_per_host: int = 1000,
        idle_timeout: float = 60,
    ) -> None:
        self._endpoints = endpoints
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self._hosts: dict[bytes, _Host] = {}
        self._deadlines = Deadlines(reactor, lazy=True)

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        try:
            host, target = self._target(uri)
            sent = _request_bytes(method, target, host.host_value, headers, bodyProducer)
        except Exception:
            return fail()
        request = _SentRequest(method, uri, headers if headers is not None else Headers())
        idle = host.idle
        while idle:
            connection = idle.pop()
            if connection.take():
                return connection.send(sent, request)
        connecting: Deferred[Any] = host.endpoint.connect(host.factory)
        return connecting.addCallback(_Connection.send, sent, request)

    def idle_connections(self) -> int:
        """
        How many connections are kept open, waiting for a request.
        """
        return sum(len(host.idle) for host in self._hosts.values())

    def closeCachedConnections(self) -> Deferred[None]:
        """
        Close every idle connection; fires once all are closed.

        Connections busy now are kept when their request ends, as after any
        other request (the gateway closes this at shutdown, after draining).
        """
        closing: list[Deferred[None]] = []
        for host in self._hosts.values():
            idle, host.idle = host.idle, []
            for connection in idle:
                closing.append(connection.close())
        self._deadlines.close()
        return gatherResults(closing).addCallback(lambda _: None)

    def _target(self, uri: bytes) -> tuple[_Host, bytes]:
        """
        The host a URL names and the request target (path and query) to send it.
        """
        start = uri.find(b"://") + 3
        end = uri.find(b"/", start)
        query = uri.find(b"?", start)
        if end < 0 or 0 <= query < end:
            end = query
        if end < 0:
            origin, target = uri, b"/"
        else:
            origin, target = uri[:end], uri[end:]
            if target[0] == 0x3F:  # "?": a query with an empty path
                target = b"/" + target
        if _UNSAFE_TARGET.search(target):
            raise ValueError(f"not a request target this client sends: {target!r}")
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = self._host(origin)
        return host, target

    def _host(self, origin: bytes) -> _Host:
        if b"@" in origin:
            # Never sent, and never repeated in an error either.
            raise ValueError("a URL with user info")
        parsed = URI.fromBytes(origin + b"/")
        if origin != b"%s://%s" % (parsed.scheme, parsed.netloc) or not parsed.host:
            raise ValueError(f"not an http(s) URL: {origin!r}")
        endpoint = self._endpoints.endpointForURI(parsed)
        return _Host(self, endpoint, _host_value(parsed.scheme, parsed.host, parsed.port))

    def _put(self, connection: _Connection, host: _Host) -> Deadline | None:
        """
        Keep C{connection} for the next request to C{host}; the idle deadline, or None if full.
        """
        if len(host.idle) >= self.max_idle_per_host:
            return None
        host.idle.append(connection)
        return self._deadlines.add(self.idle_timeout, connection.expire)


def _host_value(scheme: bytes, host: bytes, port: int) -> bytes:
    """
    The Host header for a URL, as twisted.web's Agent writes it (and SigV4 signs it).
    """
    if b":" in host:
        host = b"[" + host + b"]"
    if (scheme, port) in ((b"http", 80), (b"https", 443)):
        return host
    return b"%b:%d" % (host, port)


def _request_bytes(
    method: bytes,
    target: bytes,
    host_value: bytes,
    headers: Headers | None,
    body: IBodyProducer | None,
) -> bytes:
    """
    The whole request, as it goes on the wire.
    """
    if not _METHOD.fullmatch(method) or method == b"HEAD":
        # HEAD: its answer's framing differs, and no Invoke call needs it.
        raise ValueError(f"not a method this client sends: {method!r}")
    parts = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host_value, b"\r\n"]
    if headers is not None:
        # Headers has already refused line breaks in names and values.
        for name, values in headers.getAllRawHeaders():
            if name.lower() == b"accept-encoding":
                # treq's client always asks for gzip; Lambda never encodes its
                # answers, and an encoded answer is refused unread.
                continue
            for value in values:
                parts += (name, b": ", value, b"\r\n")
    if body is None:
        if method in (b"POST", b"PUT"):
            parts.append(b"Content-Length: 0\r\n")
        parts.append(b"\r\n")
    elif isinstance(body, BytesProducer):
        parts += (b"Content-Length: %d\r\n\r\n" % body.length, body.body)
    else:
        raise TypeError(f"the body must be a BytesProducer, not {type(body).__name__}")
    return b"".join(parts)


class _ConnectionFactory(Factory):
    """
    Makes the connections to one host; logs nothing per connection.
    """

    noisy = False

    def __init__(self, agent: KeepAliveAgent, host: _Host) -> None:
        self._agent = agent
        self._host = host

    def buildProtocol(self, addr: object) -> _Connection:
        return _Connection(self._agent, self._host)


_BODY_RECEIVED = Failure(ResponseDone("Response body fully received"))
"""
The reason every whole body ends with, made once: it holds no traceback, and
its readers only ask what it is (C{check}, C{trap}), which it answers from a
list of class names it builds the first time it is asked.
"""

# What a connection is doing.
_IDLE = 0  # in its host's idle list, or just connected
_HEAD = 1  # request sent, reading the answer's head
_BODY = 2  # reading the body
_CLOSED = 3  # closing or closed: never used again

MAX_INTERIM = 16
"""The most interim (1xx) answers read before the real one; more is an error."""


class _Stop(Exception):
    """
    Raised from a parser callback to stop the parser; the reason is kept on the connection.
    """


class _Connection(Protocol):
    """
    One kept-alive connection: one request at a time, then back to its host's idle list.

    Its answers are framed by llhttp (through httptools' response parser,
    one per connection, in strict mode): Content-Length, chunked bodies and
    their trailers (read and dropped), interim answers, bodies delimited by
    the connection's end.  The callbacks only record; what a read means is
    decided once the parser has taken all of it (L{dataReceived}).
    """

    def __init__(self, agent: KeepAliveAgent, host: _Host) -> None:
        self._agent = agent
        self._host = host
        self._state = _IDLE
        self._deadline: Deadline | None = None
        self._waiting: Deferred[IResponse] | None = None
        self._request: _SentRequest | None = None
        self._parser = HttpResponseParser(self)
        self._fields: dict[bytes, list[bytes]] = {}
        self._head_bytes = 0
        self._interim = 0
        self._response: _Response | None = None
        self._complete = False
        self._extra = False
        self._problem: BadResponse | None = None
        self._phrase = b""
        self._until_close = False
        self._reusable = True
        self._paused = False
        self._closed: Deferred[None] | None = None

    # -- the agent's side

    def take(self) -> bool:
        """
        Whether this idle connection can carry a request; stops its idle deadline.
        """
        deadline, self._deadline = self._deadline, None
        if deadline is not None:
            deadline.cancel()
        return self._state == _IDLE

    def send(self, data: bytes, request: _SentRequest) -> Deferred[IResponse]:
        """
        Write a whole request; fires with the response once its head is read.
        """
        self._state = _HEAD
        self._request = request
        self._reusable = True
        self._head_bytes = 0
        self._interim = 0
        waiting: Deferred[IResponse] = Deferred(self._cancel)
        self._waiting = waiting
        assert self.transport is not None
        send_now(self.transport, data)
        return waiting

    def expire(self) -> None:
        """
        Unused for the idle timeout: leave the idle list and close.
        """
        self._deadline = None
        idle = self._host.idle
        if self in idle:
            idle.remove(self)
        self.close()

    def close(self) -> Deferred[None]:
        """
        Close (an idle connection); fires once closed.
        """
        if self._closed is None:
            self._closed = Deferred()
        closed = self._closed
        if self._state != _CLOSED:
            self._state = _CLOSED
            assert self.transport is not None
            self.transport.loseConnection()
        return closed

    def _cancel(self, waiting: Deferred[IResponse]) -> None:
        # Deferred fails with CancelledError once this returns.
        self._waiting = None
        self._abort()

    def _abort(self) -> None:
        if self._state != _CLOSED:
            self._state = _CLOSED
            transport: Any = self.transport
            transport.abortConnection()

    # -- the network's side

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _IDLE:
            # Nothing was asked: a broken server, or the answer to a cancelled call.
            self._abort()
            return
        if state == _CLOSED:
            return
        if state == _HEAD:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._failed(BadResponse("the server switched protocols"))
            return
        except HttpParserError as e:
            if self._state == _CLOSED:
                return  # aborted meanwhile: connectionLost tells the reader
            if not self._extra:
                self._failed(self._problem or BadResponse(f"{e} in the response"))
                return
        response = self._response
        if response is None:
            if self._head_bytes > MAX_HEAD_BYTES:
                self._failed(BadResponse(f"response head over {MAX_HEAD_BYTES} bytes"))
            return
        waiting = self._waiting
        self._waiting = None
        if self._complete:
            self._body_ended(response)
        elif waiting is not None:
            # Hold the rest in the kernel until someone reads the body.
            self._pause()
        if waiting is not None:
            # Last: the response's reader may take this connection for its next call.
            waiting.callback(response)

    # httptools' callbacks, in the order the parser makes them.

    def on_message_begin(self) -> None:
        if self._state != _HEAD or self._response is not None:
            # A second answer in the same read: nothing asked for it.
            self._extra = True
            raise _Stop()

    def on_status(self, phrase: bytes) -> None:
        self._phrase = phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            return  # a trailer: read and dropped
        key = name.lower()
        values = self._fields.get(key)
        if values is None:
            self._fields[key] = [value.rstrip(b" \t")]
        else:
            values.append(value.rstrip(b" \t"))

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        fields, self._fields = self._fields, {}
        if code == 101:
            self._problem = BadResponse("the server switched protocols")
            raise _Stop()
        if code < 200:
            self._interim += 1
            if self._interim > MAX_INTERIM:
                self._problem = BadResponse(f"over {MAX_INTERIM} interim (1xx) answers")
                raise _Stop()
            return  # an interim answer: the real one follows
        codings = fields.get(b"content-encoding")
        if codings is not None and any(
            token.strip().lower() not in (b"identity", b"")
            for token in b",".join(codings).split(b",")
        ):
            # Never asked for, never inflated: a bomb is refused unread.
            self._problem = BadResponse(f"a body with Content-Encoding {codings[0][:50]!r}")
            raise _Stop()
        version = parser.get_http_version()
        self._reusable = parser.should_keep_alive()
        request = self._request
        assert request is not None
        length: int | object
        self._until_close = False
        if code in (204, 304):
            length = 0
        elif b"transfer-encoding" in fields:
            length = UNKNOWN_LENGTH
            self._until_close = fields[b"transfer-encoding"][-1].lower().strip() != b"chunked"
        elif b"content-length" in fields:
            length = int(fields[b"content-length"][0])
        else:
            length = UNKNOWN_LENGTH
            self._until_close = True
        self._response = _Response(
            (b"HTTP", 1, 1 if version == "1.1" else 0),
            code,
            self._phrase,
            checked_headers(fields),
            length,
            request,
            self,
        )
        self._state = _BODY

    def on_body(self, data: bytes) -> None:
        response = self._response
        if response is None or self._state == _CLOSED:
            raise _Stop()  # the reader gave up on the body
        response._data(data)

    def on_message_complete(self) -> None:
        if self._response is not None:
            self._complete = True

    def _body_ended(self, response: _Response) -> None:
        self._response = None
        self._request = None
        self._complete = False
        if self._reusable and not self._extra and self._state == _BODY:
            self._state = _IDLE
            if self._paused:
                self._resume()
            self._deadline = self._agent._put(self, self._host)
            if self._deadline is None:
                self.close()
        else:
            # Bytes past the body's end: nothing asked for them.
            self.close()
        response._end(_BODY_RECEIVED)

    def _failed(self, error: Exception) -> None:
        """
        The answer cannot be read: fail whoever waits for its head or body.
        """
        waiting, self._waiting = self._waiting, None
        response, self._response = self._response, None
        self._abort()
        if waiting is not None:
            waiting.errback(ResponseFailed([Failure(error)]))
        elif response is not None:
            response._end(Failure(ResponseFailed([Failure(error)])))

    def _pause(self) -> None:
        if not self._paused and self._state != _CLOSED:
            self._paused = True
            transport: Any = self.transport
            transport.pauseProducing()

    def _resume(self) -> None:
        if self._paused and self._state != _CLOSED:
            self._paused = False
            transport: Any = self.transport
            transport.resumeProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state = self._state
        self._state = _CLOSED
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            idle = self._host.idle
            if self in idle:
                idle.remove(self)
        waiting, self._waiting = self._waiting, None
        response, self._response = self._response, None
        if waiting is not None:
            waiting.errback(ResponseNeverReceived([reason]))
        elif response is not None and state != _IDLE:
            if self._until_close:
                response._end(Failure(PotentialDataLoss()))
            else:
                response._end(Failure(ResponseFailed([reason])))
        closed, self._closed = self._closed, None
        if closed is not None:
            closed.callback(None)


def whole_body(response: object) -> bytes | None:
    """
    The body of C{response}, if it is a L{KeepAliveAgent} answer whose body
    is all in and unread (L{_Response.take_whole_body}); else None.
    """
    if isinstance(response, _Response):
        return response.take_whole_body()
    return None


@implementer(IPushProducer)
class _BodyTransport:
    """
    The transport a body's reader is given: pause, resume or stop this one body.

    Detached once the body ends, so a reader cannot touch the connection
    after it has gone back to the idle list for another request.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection

    def detach(self) -> None:
        self._connection = None

    def pauseProducing(self) -> None:
        if self._connection is not None:
            self._connection._pause()

    def resumeProducing(self) -> None:
        if self._connection is not None:
            self._connection._resume()

    def stopProducing(self) -> None:
        """
        Give up on the body: the connection closes (it cannot be reused half read).
        """
        connection, self._connection = self._connection, None
        if connection is not None:
            connection._abort()

    def loseConnection(self) -> None:
        self.stopProducing()


@implementer(IResponse)
class _Response:
    """
    A response whose body is kept until someone asks for it with L{deliverBody}.
    """

    previousResponse: IResponse | None = None

    def __init__(
        self,
        version: tuple[bytes, int, int],
        code: int,
        phrase: bytes,
        headers: Headers,
        length: int | object,
        request: _SentRequest,
        connection: _Connection,
    ) -> None:
        self.version = version
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self.request = request
        self._transport = _BodyTransport(connection)
        # What arrived before deliverBody; None once delivered.
        self._pieces: list[bytes] | None = []
        self._reader: Protocol | None = None
        self._ended: Failure | None = None

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: Any) -> None:
        if self._reader is not None or self._pieces is None:
            raise RuntimeError("a response body can be delivered once")
        protocol.makeConnection(self._transport)
        pieces = self._pieces
        self._pieces = None
        for piece in pieces:
            protocol.dataReceived(piece)
        if self._ended is not None:
            protocol.connectionLost(self._ended)
            return
        self._reader = protocol
        self._transport.resumeProducing()

    def take_whole_body(self) -> bytes | None:
        """
        The whole body, if all of it is in and nothing has read it; else None.

        Taken this way, the body is read as L{deliverBody} would read it to
        its end, without a reader protocol and its Deferred.  Nearly every
        Invoke answer is in by the time its head is handed over.
        """
        pieces = self._pieces
        if pieces is None or self._ended is not _BODY_RECEIVED:
            return None
        self._pieces = None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _data(self, data: bytes) -> None:
        if not data:
            return
        if self._reader is not None:
            self._reader.dataReceived(data)
        elif self._pieces is not None:
            self._pieces.append(data)

    def _end(self, reason: Failure) -> None:
        self._transport.detach()
        reader = self._reader
        if reader is not None:
            self._reader = None
            reader.connectionLost(reason)
        elif self._pieces is not None:
            self._ended = reason
