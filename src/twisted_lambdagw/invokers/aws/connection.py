"""
One kept-alive HTTP/1.1 connection of L{twisted_lambdagw.invokers.aws.agent.KeepAliveAgent}:
its request written in one go, its answer framed by llhttp, its body
handed over whole or to a reader, and back to its host's idle list.
"""

from __future__ import annotations

import typing
from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IClientRequest,
    IResponse,
)
from zope.interface import implementer

from twisted_lambdagw.net.deadlines import Deadline
from twisted_lambdagw.net.headers import checked_headers
from twisted_lambdagw.net.sending import send_now

MAX_HEAD_BYTES = 64 * 1024
"""The longest response head (status line and headers) read; longer is an error."""


class BadResponse(Exception):
    """
    What the server sent is not an HTTP/1.1 response this client can read.
    """


@implementer(IClientRequest)
class SentRequest:
    """
    What a response says was asked (C{IResponse.request}).
    """

    __slots__ = ("absoluteURI", "headers", "method")

    def __init__(self, method: bytes, uri: bytes, headers: Headers) -> None:
        self.method = method
        self.absoluteURI = uri
        self.headers = headers


class Host:
    """
    One (scheme, host, port): its endpoint, its Host header and its idle connections.
    """

    __slots__ = ("endpoint", "factory", "host_value", "idle")

    def __init__(self, agent: Owner, endpoint: IStreamClientEndpoint, host_value: bytes):
        self.endpoint = endpoint
        self.host_value = host_value
        self.idle: list[Connection] = []
        self.factory = ConnectionFactory(agent, self)


class Owner(typing.Protocol):
    """
    What a connection asks of the agent that made it.
    """

    def put_idle(self, connection: Connection, host: Host) -> Deadline | None:
        """
        Keep C{connection} for the next request to C{host}; the idle deadline, or None if full.
        """
        ...


class ConnectionFactory(Factory):
    """
    Makes the connections to one host; logs nothing per connection.
    """

    noisy = False

    def __init__(self, agent: Owner, host: Host) -> None:
        self._agent = agent
        self._host = host

    def buildProtocol(self, addr: object) -> Connection:
        return Connection(self._agent, self._host)


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


class Connection(Protocol):
    """
    One kept-alive connection: one request at a time, then back to its host's idle list.

    Its answers are framed by llhttp (through httptools' response parser,
    one per connection, in strict mode): Content-Length, chunked bodies and
    their trailers (read and dropped), interim answers, bodies delimited by
    the connection's end.  The callbacks only record; what a read means is
    decided once the parser has taken all of it (L{dataReceived}).
    """

    def __init__(self, agent: Owner, host: Host) -> None:
        self._agent = agent
        self._host = host
        self._state = _IDLE
        self._deadline: Deadline | None = None
        self._waiting: Deferred[IResponse] | None = None
        self._request: SentRequest | None = None
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

    def send(self, data: bytes, request: SentRequest) -> Deferred[IResponse]:
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
            self._deadline = self._agent.put_idle(self, self._host)
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

    def __init__(self, connection: Connection) -> None:
        self._connection: Connection | None = connection

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
        request: SentRequest,
        connection: Connection,
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
