"""
The HTTP client that carries Invoke calls to Lambda.

Every invocation is one POST to one of very few hosts (Lambda's endpoint in
each region), so the send path is built for that, around treq's HTTPClient:

  - One endpoint per (scheme, host, port), made once and kept.  twisted.web's
    default makes a new endpoint for every request, and for https a new TLS
    context too, even when the request then goes out on a pooled
    connection.  An IP literal (a local Lambda API, the benchmark) gets a
    plain TCP endpoint: no name lookup on a thread for each new connection.
    https keeps the same certificate checks as twisted.web's default
    (L{BrowserLikePolicyForHTTPS}: the system's roots, service-identity's
    host name check).
  - A large persistent pool, which logs nothing per connection (twisted.web's
    logs "Starting factory" and "Stopping factory" for each one).
  - A request body that is already in memory is written at once, instead of
    through treq's default producer, which reads it from a file object in
    a cooperator task on a later turn of the reactor.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from treq.client import HTTPClient  # also registers treq's IBodyProducer adapters
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer


class _QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    noisy = False


class QuietPool(HTTPConnectionPool):
    """
    An HTTPConnectionPool that does not log each connection it opens or closes.
    """

    # The pool builds one factory per new connection from this attribute,
    # which twisted.web documents (as an ivar) for exactly this kind of use.
    _factory = _QuietHTTP11ClientFactory


def persistent_pool(reactor: Any, max_per_host: int, idle_timeout: int = 60) -> QuietPool:
    """
    A persistent pool keeping up to C{max_per_host} idle connections per host,
    each closed after C{idle_timeout} seconds unused (before Lambda's side
    closes it: a connection the far end closed first fails the next request).
    """
    pool = QuietPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = idle_timeout
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


def body_producer(data: Any) -> IBodyProducer:
    """
    treq's C{data_to_body_producer}: L{BytesProducer} for bytes, else treq's default.
    """
    if isinstance(data, bytes):
        return BytesProducer(data)
    return IBodyProducer(data)


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


def lambda_client(
    reactor: Any,
    pool: HTTPConnectionPool,
    connect_timeout: float = 30,
    tls: IPolicyForHTTPS | None = None,
) -> HTTPClient:
    """
    A treq HTTPClient for Invoke calls: cached endpoints, C{pool}, bytes bodies written at once.
    """
    endpoints = EndpointCache(reactor, connect_timeout, tls)
    agent = Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
    return HTTPClient(agent, data_to_body_producer=body_producer)
