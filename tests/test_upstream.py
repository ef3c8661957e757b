"""
The HTTP client for Invoke calls: its pool, endpoints and body producer.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI, FileBodyProducer
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import provider

from twisted_lambdagw.upstream import (
    BytesProducer,
    EndpointCache,
    body_producer,
    lambda_client,
    persistent_pool,
)

from .loopback import real_reactor


class StartingEndpoint:
    """
    An endpoint that starts and stops the factory it is given, as real
    endpoints do around a connection, without connecting anything.
    """

    def connect(self, factory: Factory) -> Deferred[Protocol | None]:
        factory.doStart()
        factory.doStop()
        return succeed(None)


class PoolTests(SynchronousTestCase):
    """
    The pool keeps many connections and logs nothing per connection.
    """

    def test_no_factory_lines(self) -> None:
        """
        Opening a connection logs no "Starting factory" or "Stopping factory" line.
        """
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        pool = persistent_pool(MemoryReactorClock(), max_per_host=7)
        endpoint: Any = StartingEndpoint()
        self.successResultOf(pool.getConnection(("http", b"127.0.0.1", 80), endpoint))
        self.assertEqual([formatEvent(e) for e in events if "factory" in formatEvent(e)], [])

    def test_sizes(self) -> None:
        """
        The pool is persistent with the given size and idle timeout.
        """
        pool = persistent_pool(MemoryReactorClock(), max_per_host=7, idle_timeout=30)
        self.assertTrue(pool.persistent)
        self.assertEqual((pool.maxPersistentPerHost, pool.cachedConnectionTimeout), (7, 30))


class BodyProducerTests(SynchronousTestCase):
    """
    Bodies in memory are written at once.
    """

    def test_written_at_once(self) -> None:
        """
        startProducing writes the whole body before it returns, and is done.
        """
        producer = BytesProducer(b"x" * 100_000)
        self.assertEqual(producer.length, 100_000)
        consumer = StringTransport()
        done = producer.startProducing(consumer)
        self.assertEqual(consumer.value(), b"x" * 100_000)
        self.assertIsNone(self.successResultOf(done))

    def test_empty(self) -> None:
        """
        An empty body has length 0 and writes nothing that matters.
        """
        producer = BytesProducer(b"")
        consumer = StringTransport()
        self.successResultOf(producer.startProducing(consumer))
        self.assertEqual((producer.length, consumer.value()), (0, b""))

    def test_treq_data(self) -> None:
        """
        bytes become a BytesProducer; file objects keep treq's default producer.
        """
        self.assertIsInstance(body_producer(b"{}"), BytesProducer)
        self.assertIsInstance(body_producer(io.BytesIO(b"{}")), FileBodyProducer)


def uri(text: str) -> URI:
    parsed: URI = URI.fromBytes(text.encode("ascii"))
    return parsed


class EndpointCacheTests(SynchronousTestCase):
    """
    One endpoint per scheme, host and port; IP literals need no name lookup.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.cache = EndpointCache(self.reactor, connect_timeout=7)

    def test_cached(self) -> None:
        """
        The same scheme, host and port get the same endpoint; another port another.
        """
        first = self.cache.endpointForURI(uri("http://127.0.0.1:9001/a"))
        self.assertIs(self.cache.endpointForURI(uri("http://127.0.0.1:9001/b?c=d")), first)
        self.assertIsNot(self.cache.endpointForURI(uri("http://127.0.0.1:9002/a")), first)

    def test_ipv4_literal_connects_at_once(self) -> None:
        """
        An IPv4 literal is connected to directly, with the connect timeout.
        """
        endpoint = self.cache.endpointForURI(uri("http://127.0.0.1:9001/a"))
        endpoint.connect(Factory.forProtocol(Protocol))
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 9001, 7))

    def test_ipv6_literal_connects_at_once(self) -> None:
        """
        An IPv6 literal is connected to directly too.
        """
        endpoint = self.cache.endpointForURI(uri("http://[::1]:9001/a"))
        endpoint.connect(Factory.forProtocol(Protocol))
        [(host, port, _, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("::1", 9001))

    def test_host_name(self) -> None:
        """
        A host name gets a HostnameEndpoint, which looks the name up.
        """
        endpoint = self.cache.endpointForURI(uri("http://lambda.example:9001/a"))
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_https_is_tls(self) -> None:
        """
        https connections are TLS over TCP.
        """
        endpoint = self.cache.endpointForURI(uri("https://127.0.0.1/a"))
        endpoint.connect(Factory.forProtocol(Protocol))
        [(host, port, factory, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 443))
        wrapping: Any = factory  # the endpoint's wrapper, around TLS
        self.assertIsInstance(wrapping._wrappedFactory, TLSMemoryBIOFactory)

    def test_other_scheme(self) -> None:
        """
        Schemes other than http and https are refused.
        """
        with self.assertRaises(SchemeNotSupported):
            self.cache.endpointForURI(uri("ftp://127.0.0.1/a"))


class Recorder(Resource):
    """
    Answers every request with its body, and remembers each request.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[bytes | None, bytes, Any]] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body: bytes = request.content.read()
        length = request.getHeader("content-length")
        self.requests.append((length.encode() if length else None, body, request.channel))
        return body


class LambdaClientTests(TestCase):
    """
    The client on real loopback sockets.
    """

    async def test_posts_and_reuses_connection(self) -> None:
        """
        Bytes bodies arrive with their Content-Length; a second request goes
        out on the first one's connection.
        """
        reactor = real_reactor()
        recorder = Recorder()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(recorder))
        self.addCleanup(port.stopListening)
        pool = persistent_pool(reactor, max_per_host=10)
        self.addCleanup(pool.closeCachedConnections)
        client = lambda_client(reactor, pool)
        url = f"http://127.0.0.1:{port.getHost().port}/x"
        for body in (b'{"n":1}', b""):
            response = await client.post(url, data=body)
            self.assertEqual(await response.content(), body)
        [(length1, body1, channel1), (length2, body2, channel2)] = recorder.requests
        self.assertEqual((length1, body1, length2, body2), (b"7", b'{"n":1}', b"0", b""))
        self.assertIs(channel1, channel2)
