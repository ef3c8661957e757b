"""
The HTTP client for Invoke calls: its pool, endpoints and body producer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from treq import content
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import provider

from twisted_lambdagw.upstream import (
    BytesProducer,
    EndpointCache,
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
    Answers every request with its body (or a redirect, for ``/moved``), and
    remembers each request: its headers, body and connection.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[dict[bytes, list[bytes]], bytes, Any]] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body: bytes = request.content.read()
        headers = {k: list(v) for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append((headers, body, request.channel))
        if request.path == b"/moved":
            request.setResponseCode(307)
            request.setHeader("location", "/x")
            return b""
        return body


class InvokeClientTests(TestCase):
    """
    The Invoke client on real loopback sockets.
    """

    async def start(self) -> tuple[Recorder, str, Any]:
        reactor = real_reactor()
        recorder = Recorder()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(recorder))
        self.addCleanup(port.stopListening)
        pool = persistent_pool(reactor, max_per_host=10)
        self.addCleanup(pool.closeCachedConnections)
        return recorder, f"http://127.0.0.1:{port.getHost().port}", lambda_client(reactor, pool)

    async def test_posts_and_reuses_connection(self) -> None:
        """
        Bodies arrive with their Content-Length; a second request goes out on
        the first one's connection.
        """
        recorder, base, client = await self.start()
        for body in (b'{"n":1}', b""):
            response = await client.post(base + "/x", data=body)
            self.assertEqual(await content(response), body)
        [(headers1, body1, channel1), (headers2, body2, channel2)] = recorder.requests
        self.assertEqual((headers1[b"Content-Length"], body1), ([b"7"], b'{"n":1}'))
        self.assertEqual((headers2[b"Content-Length"], body2), ([b"0"], b""))
        self.assertIs(channel1, channel2)

    async def test_headers_as_given(self) -> None:
        """
        The headers given are sent, with Host; no cookie or gzip headers are added.
        """
        recorder, base, client = await self.start()
        headers = {"X-Amz-Date": ["20250101T000000Z"], "X-Two": ["a", "b"]}
        response = await client.post((base + "/x").encode("ascii"), data=b"{}", headers=headers)
        await content(response)
        [(sent, _, _)] = recorder.requests
        self.assertEqual(sent.pop(b"X-Amz-Date"), [b"20250101T000000Z"])
        self.assertEqual(sent.pop(b"X-Two"), [b"a", b"b"])
        self.assertEqual(sent.pop(b"Host"), [base.removeprefix("http://").encode("ascii")])
        self.assertEqual(sent, {b"Content-Length": [b"2"]})

    async def test_no_redirects(self) -> None:
        """
        A redirect is the answer: a signed call is never sent elsewhere.
        """
        recorder, base, client = await self.start()
        response = await client.post(base + "/moved", data=b"{}")
        await content(response)
        self.assertEqual(response.code, 307)
        self.assertEqual(len(recorder.requests), 1)

    async def test_parsed_urls_bounded(self) -> None:
        """
        Parsed URLs are kept up to a bound.
        """
        recorder, base, client = await self.start()
        client.max_urls = 3
        for n in range(7):
            await content(await client.post(f"{base}/x?n={n}", data=b"{}"))
        self.assertLessEqual(len(client._parsed), 3)
        self.assertEqual(len(recorder.requests), 7)

    def test_other_scheme(self) -> None:
        """
        A URL that is not http or https fails the request.
        """
        client = lambda_client(MemoryReactorClock(), persistent_pool(MemoryReactorClock(), 1))
        self.failureResultOf(client.post("ftp://127.0.0.1/x"), SchemeNotSupported)


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


class CountingReactor(MemoryReactorClock):
    """
    A memory reactor that counts the timed calls made on it.
    """

    made = 0

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        self.made += 1
        return super().callLater(delay, callable, *args, **kw)


class MemoryLambda:
    """
    The client over a memory reactor: connections are made by hand, each
    request is answered with a fixed response.
    """

    def __init__(self, idle_timeout: int = 60) -> None:
        self.reactor = CountingReactor()
        self.pool = persistent_pool(self.reactor, max_per_host=10, idle_timeout=idle_timeout)
        self.client = lambda_client(self.reactor, self.pool)
        self.connections: list[tuple[Any, StringTransport]] = []

    def post(self) -> bytes:
        got: list[bytes] = []
        posting = self.client.post("http://127.0.0.1:9/x", data=b"{}")
        posting.addCallback(content).addCallback(got.append)
        while self.reactor.tcpClients:
            _, _, factory, _, _ = self.reactor.tcpClients.pop(0)
            protocol: Any = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            self.connections.append((protocol, transport))
        for protocol, transport in self.connections:
            if transport.value():
                transport.clear()
                protocol.dataReceived(RESPONSE)
        [body] = got
        return body

    @property
    def transports(self) -> list[StringTransport]:
        return [transport for _, transport in self.connections]


class PoolIdleTimeoutTests(SynchronousTestCase):
    """
    Idle connections close after exactly the idle timeout; a request in between restarts it.
    """

    def test_closes_when_idle(self) -> None:
        """
        A connection left idle is closed at the idle timeout, not before.
        """
        memory = MemoryLambda(idle_timeout=30)
        self.assertEqual(memory.post(), b"{}")
        [transport] = memory.transports
        memory.reactor.advance(29.75)
        self.assertFalse(transport.disconnecting)
        memory.reactor.advance(0.25)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(memory.reactor.getDelayedCalls(), [])

    def test_reuse_restarts(self) -> None:
        """
        Reused before its timeout, a connection stays open until a full timeout after its last use.
        """
        memory = MemoryLambda(idle_timeout=30)
        memory.post()
        memory.reactor.advance(20)
        memory.post()
        [transport] = memory.transports
        memory.reactor.advance(29.75)
        self.assertFalse(transport.disconnecting)
        memory.reactor.advance(0.25)
        self.assertTrue(transport.disconnecting)

    def test_one_timed_call(self) -> None:
        """
        Many requests on a pooled connection make one timed call, not one each.
        """
        memory = MemoryLambda()
        for _ in range(50):
            memory.post()
            memory.reactor.advance(0.25)
        self.assertEqual(memory.reactor.made, 1)
        self.assertEqual(len(memory.reactor.getDelayedCalls()), 1)
        memory.pool.closeCachedConnections()
        self.assertEqual(memory.reactor.getDelayedCalls(), [])
