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
    without a reader protocol (L{connection.whole_body});
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

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IConsumer
from twisted.web.client import URI
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IResponse,
)
from zope.interface import implementer

from twisted_lambdagw.net.deadlines import Deadline, Deadlines

from .connection import Connection, Host, SentRequest

_METHOD = re.compile(rb"[A-Z]{1,20}")
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f#]")


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


@implementer(IAgent)
class KeepAliveAgent:
    """
    An C{IAgent} sending each request on a kept-alive HTTP/1.1 connection.

    @param endpoints: the endpoint for each (scheme, host, port).
    @param max_idle_per_host: the most idle connections kept for one host;
        one coming back to a full set is closed.
    @param idle_timeout: seconds an idle connection is kept (keep it below
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
        self._hosts: dict[bytes, Host] = {}
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
        request = SentRequest(method, uri, headers if headers is not None else Headers())
        idle = host.idle
        while idle:
            connection = idle.pop()
            if connection.take():
                return connection.send(sent, request)
        connecting: Deferred[Any] = host.endpoint.connect(host.factory)
        return connecting.addCallback(Connection.send, sent, request)

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

    def _target(self, uri: bytes) -> tuple[Host, bytes]:
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

    def _host(self, origin: bytes) -> Host:
        if b"@" in origin:
            # Never sent, and never repeated in an error either.
            raise ValueError("a URL with user info")
        parsed = URI.fromBytes(origin + b"/")
        if origin != b"%s://%s" % (parsed.scheme, parsed.netloc) or not parsed.host:
            raise ValueError(f"not an http(s) URL: {origin!r}")
        endpoint = self._endpoints.endpointForURI(parsed)
        return Host(self, endpoint, _host_value(parsed.scheme, parsed.host, parsed.port))

    def put_idle(self, connection: Connection, host: Host) -> Deadline | None:
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
