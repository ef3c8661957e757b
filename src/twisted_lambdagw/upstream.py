"""
The HTTP client that carries Invoke calls to Lambda.

Every invocation is one POST of bytes already in memory to one of very few
hosts (Lambda's endpoint in each region), so the send path is built for
that.  L{InvokeClient} offers the part of treq's C{HTTPClient} API that
L{twisted_lambdagw.aws.AWSInvoker} uses (C{post}, then C{treq.content} on
the response), so tests still drive the invoker with treq's C{StubTreq};
but it goes straight to twisted.web's Agent.  treq's C{HTTPClient.request}
re-encodes the URL through hyperlink and IDNA, builds a cookie jar and three
wrapping agents (cookies, redirects, gzip) for every request: measured, a
quarter of the gateway's whole CPU per invocation, for features an Invoke
call never uses.

  - One endpoint per (scheme, host, port), made once and kept.  twisted.web's
    default makes a new endpoint for every request, and for https a new TLS
    context too, even when the request then goes out on a pooled
    connection.  An IP literal (a local Lambda API, the benchmark) gets a
    plain TCP endpoint: no name lookup on a thread for each new connection.
    https keeps the same certificate checks as twisted.web's default
    (L{BrowserLikePolicyForHTTPS}: the system's roots, service-identity's
    host name check).
  - Each URL is parsed once.
  - A large persistent pool, which logs nothing per connection (twisted.web's
    logs "Starting factory" and "Stopping factory" for each one).
  - The body is written at once, not read from a file object in a
    cooperator task on a later turn of the reactor (treq's default).
  - No redirects are followed (a signed call must not go elsewhere), no
    cookies kept, no gzip asked for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.web._newclient import _ensureValidURI
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from .deadlines import Deadlines


class _QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    noisy = False


class QuietPool(HTTPConnectionPool):
    """
    An HTTPConnectionPool that does not log each connection it opens or
    closes, nor make a timed call for each request.

    twisted.web's pool makes a timed call (the idle timeout) each time a
    connection comes back to it and cancels it when the connection is taken
    again: once per request.  Here the idle timeouts are L{Deadlines}, one
    timed call for the whole pool; connections still close after exactly
    C{cachedConnectionTimeout} seconds unused.
    """

    # The pool builds one factory per new connection from this attribute,
    # which twisted.web documents (as an ivar) for exactly this kind of use.
    _factory = _QuietHTTP11ClientFactory

    def __init__(self, reactor: Any, persistent: bool = True) -> None:
        super().__init__(reactor, persistent)
        self._idle = Deadlines(reactor, lazy=True)

    def _putConnection(self, key: Any, connection: Any) -> None:
        # twisted.web's own, with a Deadline where it made a timed call:
        # getConnection and closeCachedConnections cancel either alike.
        if connection.state != "QUIESCENT":
            super()._putConnection(key, connection)  # logs the bug, keeps nothing
            return
        connections = self._connections.setdefault(key, [])
        if len(connections) == self.maxPersistentPerHost:
            dropped = connections.pop(0)
            dropped.transport.loseConnection()
            self._timeouts.pop(dropped).cancel()
        connections.append(connection)
        self._timeouts[connection] = self._idle.add(
            self.cachedConnectionTimeout, lambda: self._removeConnection(key, connection)
        )

    def closeCachedConnections(self) -> Deferred[None]:
        closed: Deferred[None] = super().closeCachedConnections()
        self._idle.close()
        return closed


def persistent_pool(reactor: Any, max_per_host: int, idle_timeout: int = 60) -> QuietPool:
    """
    A persistent pool keeping up to C{max_per_host} idle connections per host,
    each closed after C{idle_timeout} seconds unused (before Lambda's side
    closes it: a connection the far end closed first fails the next request).
    """
    pool = QuietPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = idle_timeout
    # The pool's automatic retry only ever retries bodiless GET, HEAD,
    # OPTIONS, DELETE and TRACE requests; every Invoke is a POST, so its
    # wrapper around each pooled connection would be pure cost.
    pool.retryAutomatically = False
    return pool


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body already in memory, written to the connection in one call.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
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


@implementer(IAgentEndpointFactory)
class EndpointCache:
    """
    One client endpoint per (scheme, host, port), made on first use and kept.

    :param connect_timeout: seconds to wait for a new connection.
    :param tls: what checks https servers' certificates; by default the same
        as twisted.web's Agent.
    """

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float = 30,
        tls: IPolicyForHTTPS | None = None,
    ) -> None:
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._tls = tls if tls is not None else BrowserLikePolicyForHTTPS()
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = self._endpoint(uri.scheme, uri.host, uri.port)
        return endpoint

    def _endpoint(self, scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
        if scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {scheme!r}")
        name = host.decode("ascii")
        endpoint: IStreamClientEndpoint
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self._connect_timeout)
        else:
            tcp = TCP4ClientEndpoint if address.version == 4 else TCP6ClientEndpoint
            endpoint = tcp(self._reactor, name, port, timeout=self._connect_timeout)
        if scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorForNetloc(host, port), endpoint)
        return endpoint


class InvokeClient:
    """
    treq's C{post}, for Invoke calls: straight to an Agent, each URL parsed once.

    :param agent: an Agent over a persistent pool and an L{EndpointCache}.
    """

    max_urls = 4096
    """URLs whose parse is kept (names come from clients: the cache is bounded)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._parsed: dict[bytes, tuple[URI, tuple[bytes, bytes, int], bytes]] = {}

    def post(
        self,
        url: str | bytes,
        data: bytes = b"",
        headers: Mapping[str, list[str]] | None = None,
        unbuffered: bool = False,
    ) -> Deferred[IResponse]:
        """
        POST C{data} to C{url}; the response's body is left unread (as
        treq's C{unbuffered}; read it with C{treq.content}).
        """
        raw = url.encode("ascii") if isinstance(url, str) else url
        known = self._parsed.get(raw)
        if known is None:
            parsed = URI.fromBytes(_ensureValidURI(raw.strip()))
            known = (parsed, (parsed.scheme, parsed.host, parsed.port), parsed.originForm)
            if len(self._parsed) >= self.max_urls:
                self._parsed.clear()
            self._parsed[raw] = known
        parsed, key, origin_form = known
        sent = Headers()
        for name, values in (headers or {}).items():
            sent.setRawHeaders(name, values)
        agent = self._agent
        try:
            endpoint = agent._getEndpoint(parsed)
        except SchemeNotSupported:
            return fail()
        # Agent.request without its URL parse: the part of it that is kept.
        response: Deferred[IResponse] = agent._requestWithEndpoint(
            key, endpoint, b"POST", parsed, sent, BytesProducer(data), origin_form
        )
        return response


def lambda_client(
    reactor: Any,
    pool: HTTPConnectionPool,
    connect_timeout: float = 30,
    tls: IPolicyForHTTPS | None = None,
) -> InvokeClient:
    """
    The client for Invoke calls: cached endpoints, C{pool}, bodies written at once.
    """
    endpoints = EndpointCache(reactor, connect_timeout, tls)
    return InvokeClient(Agent.usingEndpointFactory(reactor, endpoints, pool=pool))
