"""
The HTTP client for Invoke calls: treq over its pool, endpoints, body
producer, prepared URLs and empty cookie jar.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from treq import content
from treq.client import HTTPClient
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, Request, Site

from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.invokers.aws.agent import BytesProducer
from twisted_lambdagw.invokers.aws.invoker import AWSInvoker, CredentialSource
from twisted_lambdagw.invokers.aws.upstream import (
    MAX_REPLY_BYTES,
    NO_COOKIES,
    EndpointCache,
    PreparedURL,
    ReplyTooLarge,
    lambda_client,
    persistent_pool,
    read_body,
)
from twisted_lambdagw.invokers.base import InvokeCall
from twisted_lambdagw.testing import FakeContext, FakeLambda, RawResponse

from .loopback import real_reactor


class PoolTests(SynchronousTestCase):
    """
    The pool is a kept-alive agent of the given size and idle timeout.
    """

    def test_sizes(self) -> None:
        pool = persistent_pool(MemoryReactorClock(), max_per_host=7, idle_timeout=30)
        self.assertEqual((pool.max_idle_per_host, pool.idle_timeout), (7, 30))


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
    Answers every request with its body and a cookie (or a redirect, for
    ``/moved``), and remembers each request: its headers, body and connection.
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
        request.setHeader("set-cookie", "session=kept; Path=/")
        if request.path == b"/moved":
            request.setResponseCode(307)
            request.setHeader("location", "/x")
            return b""
        return body


class LambdaClientTests(TestCase):
    """
    treq's client as the gateway builds it, on real loopback sockets.
    """

    async def start(self, resource: Resource | None = None) -> tuple[Recorder, str, HTTPClient]:
        reactor = real_reactor()
        recorder = Recorder()
        site = Site(resource if resource is not None else recorder)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        pool = persistent_pool(reactor, max_per_host=10)
        self.addCleanup(pool.closeCachedConnections)
        return recorder, f"http://127.0.0.1:{port.getHost().port}", lambda_client(pool)

    async def test_posts_and_reuses_connection(self) -> None:
        """
        Bodies arrive with their Content-Length; a second request goes out on
        the first one's connection.
        """
        recorder, base, client = await self.start()
        url = PreparedURL.of(base + "/x")
        for body in (b'{"n":1}', b""):
            response = await client.post(url, data=body, **INVOKE)
            self.assertEqual(await content(response), body)
        [(headers1, body1, channel1), (headers2, body2, channel2)] = recorder.requests
        self.assertEqual((headers1[b"Content-Length"], body1), ([b"7"], b'{"n":1}'))
        self.assertEqual((headers2[b"Content-Length"], body2), ([b"0"], b""))
        self.assertIs(channel1, channel2)

    async def test_read_body_bounded(self) -> None:
        """
        A body of the bound is read whole; one byte more is refused.  A body
        refused half read closes its connection (it cannot carry another
        request with the rest still coming); one that had all arrived keeps it.
        """
        recorder, base, client = await self.start()
        url = PreparedURL.of(base + "/x")
        response = await client.post(url, data=b"x" * 1000, **INVOKE)
        self.assertEqual(await read_body(response, limit=1000), b"x" * 1000)
        response = await client.post(url, data=b"y" * 1001, **INVOKE)
        with self.assertRaises(ReplyTooLarge) as caught:
            await read_body(response, limit=1000)
        self.assertIn("over 1,000 bytes", str(caught.exception))
        # Far more than one read of the socket: refused while still arriving.
        response = await client.post(url, data=b"w" * 2_000_000, **INVOKE)
        with self.assertRaises(ReplyTooLarge):
            await read_body(response, limit=1000)
        response = await client.post(url, data=b"z", **INVOKE)
        self.assertEqual(await read_body(response), b"z")
        channels = [channel for _, _, channel in recorder.requests]
        self.assertIs(channels[0], channels[1])
        self.assertIs(channels[1], channels[2])
        self.assertIsNot(channels[2], channels[3])

    async def test_headers_as_given(self) -> None:
        """
        The headers given are sent, with Host; no cookie, and no Accept-Encoding
        (treq's client adds one: the agent never sends it).
        """
        recorder, base, client = await self.start()
        headers: dict[str | bytes, list[str | bytes]] = {
            "X-Amz-Date": ["20250101T000000Z"],
            "X-Two": ["a", "b"],
        }
        url = PreparedURL.of(base + "/x")
        for _ in range(2):
            await content(await client.post(url, data=b"{}", headers=headers, **INVOKE))
        for sent, _, _ in recorder.requests:
            self.assertEqual(sent.pop(b"X-Amz-Date"), [b"20250101T000000Z"])
            self.assertEqual(sent.pop(b"X-Two"), [b"a", b"b"])
            self.assertEqual(sent.pop(b"Host"), [base.removeprefix("http://").encode("ascii")])
            self.assertEqual(sent, {b"Content-Length": [b"2"]})

    async def test_cookies_never_kept(self) -> None:
        """
        A cookie the server sets is not sent back, with or without cookies= on the call.
        """
        recorder, base, client = await self.start()
        url = PreparedURL.of(base + "/x")
        await content(await client.post(url, data=b"{}", **INVOKE))
        await content(await client.post(url, data=b"{}", **INVOKE))
        await content(await client.post(url, data=b"{}"))
        await content(await client.post(url, data=b"{}"))
        self.assertEqual([b"Cookie" in sent for sent, _, _ in recorder.requests], [False] * 4)
        self.assertEqual(list(NO_COOKIES), [])

    async def test_no_redirects(self) -> None:
        """
        A redirect is the answer: a signed call is never sent elsewhere.
        """
        recorder, base, client = await self.start()
        response = await client.post(PreparedURL.of(base + "/moved"), data=b"{}", **INVOKE)
        await content(response)
        self.assertEqual(response.code, 307)
        self.assertEqual(len(recorder.requests), 1)

    async def test_no_gzip_asked(self) -> None:
        """
        Nothing asks for an encoding: a server that gzips when asked answers plain.
        """
        recorder = Recorder()
        _, base, client = await self.start(
            EncodingResourceWrapper(recorder, [GzipEncoderFactory()])
        )
        body = b'{"long": "' + b"x" * 5000 + b'"}'
        response = await client.post(PreparedURL.of(base + "/x"), data=body, **INVOKE)
        # twisted.web's decoding wrapper under treq leaves an empty value.
        self.assertEqual(b"".join(response.headers.getRawHeaders(b"Content-Encoding", [])), b"")
        self.assertEqual(await read_body(response), body)
        [(sent, _, _)] = recorder.requests
        self.assertNotIn(b"Accept-Encoding", sent)

    def test_other_scheme(self) -> None:
        """
        A URL that is not http or https fails the request.
        """
        client = lambda_client(persistent_pool(MemoryReactorClock(), 1))
        self.failureResultOf(client.post("ftp://127.0.0.1/x", **INVOKE), SchemeNotSupported)

    def test_ipv6_literal(self) -> None:
        """
        A prepared URL with an IPv6 literal is sent as it is (hyperlink's IDNA
        pass, which refuses it, never runs).
        """
        reactor = MemoryReactorClock()
        client = lambda_client(persistent_pool(reactor, 1))
        client.post(PreparedURL.of("http://[::1]:9001/x"), data=b"{}", **INVOKE)
        [(host, port, _, _, _)] = reactor.tcpClients
        self.assertEqual((host, port), ("::1", 9001))


INVOKE: dict[str, Any] = {"cookies": NO_COOKIES, "allow_redirects": False, "unbuffered": True}
"""What the invoker passes with every call."""


class PreparedURLTests(SynchronousTestCase):
    """
    URLs already in URI form are sent as they are, and only those are accepted.
    """

    def test_as_given(self) -> None:
        """
        to_uri is the URL itself and to_text the text it was made from.
        """
        for text in [
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/"
            "arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations?Qualifier=%24LATEST",
            "http://127.0.0.1:80/a/b/",
            "http://[::1]:9001/x?Q=a%2fb",
            "http://lambda.example",
            "http://Lambda.EXAMPLE/x~y",
        ]:
            url = PreparedURL.of(text)
            self.assertIs(url.to_uri(), url)
            self.assertEqual(url.to_text(), text)
            self.assertEqual(url.to_uri().to_text(), text)

    def test_parsed(self) -> None:
        """
        The parts are hyperlink's, for whatever reads them.
        """
        url = PreparedURL.of("https://h.example:8443/a%3Ab/c?Qualifier=%24LATEST")
        self.assertEqual((url.scheme, url.host, url.port), ("https", "h.example", 8443))
        self.assertEqual((url.path, url.query), (("a%3Ab", "c"), (("Qualifier", "%24LATEST"),)))

    def test_not_uri_form(self) -> None:
        """
        Text that is not an http(s) URL in URI form is refused.
        """
        for text in [
            "http://h/a b",
            "http://h/caf\u00e9",
            "http://caf\u00e9.example/x",
            "http://h/%zz",
            "http://h/100%",
            "http://user@h/x",
            "http://h/x#fragment",
            "ftp://h/x",
            "HTTP://h/x",
            "http:///x",
            "http://h:port/x",
            "http://h/x\n",
            "/x",
        ]:
            with self.assertRaises(ValueError, msg=text):
                PreparedURL.of(text)

    def test_replaced(self) -> None:
        """
        A copy with other parts (treq makes one for params=) is encoded as any URL is.
        """
        url = PreparedURL.of("http://h.example/x").replace(query=(("a", "b c"),))
        self.assertEqual(url.to_uri().to_text(), "http://h.example/x?a=b%20c")


def answer(result: object, event: object = None, context: FakeContext | None = None) -> object:
    """
    A function that returns C{result}, whatever it is called with.
    """
    return result


class InvokeOverLoopbackTests(TestCase):
    """
    The invoker with the gateway's client, against a fake Lambda API on loopback.
    """

    async def start(self, api: Resource) -> AWSInvoker:
        reactor = real_reactor()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(api))
        self.addCleanup(port.stopListening)
        pool = persistent_pool(reactor, max_per_host=10)
        self.addCleanup(pool.closeCachedConnections)
        return AWSInvoker(
            lambda_client(pool),
            CredentialSource.from_keys("AKIDEXAMPLE", "secret"),
            "us-east-1",
            f"http://127.0.0.1:{port.getHost().port}",
            clock=reactor,
        )

    async def test_cookie_not_sent_back(self) -> None:
        """
        A Set-Cookie from Lambda is not sent with the next call.
        """

        def handler(event: Any, context: FakeContext) -> RawResponse:
            return RawResponse(200, b"{}", {"Set-Cookie": "AWSALB=sticky; Path=/"})

        api = FakeLambda({"fn": handler})
        invoker = await self.start(api)
        for _ in range(2):
            await invoker.invoke(InvokeCall(function="fn", payload=b"{}"))
        self.assertEqual(["cookie" in call.headers for call in api.calls], [False, False])

    async def test_redirect_is_an_error(self) -> None:
        """
        A 302 from the Lambda API is the gateway's error; nothing is sent to its Location.
        """
        for status in (302, 303, 307):
            moved = RawResponse(
                status, b"", {"Location": "/2015-03-31/functions/other/invocations"}
            )
            api = FakeLambda({"fn": functools.partial(answer, moved), "other": answer})
            invoker = await self.start(api)
            with self.assertRaises(InvokeFailed) as caught:
                await invoker.invoke(InvokeCall(function="fn", payload=b"{}"))
            self.assertEqual(caught.exception.code, str(status))
            self.assertEqual([call.function for call in api.calls], ["fn"])

    async def test_reply_too_large(self) -> None:
        """
        A reply past the bound is the gateway's 502 error, not a body held in memory.
        """
        big = RawResponse(200, b'"' + b"x" * (MAX_REPLY_BYTES + 1_000_000) + b'"')
        api = FakeLambda({"fn": functools.partial(answer, big)})
        invoker = await self.start(api)
        with self.assertRaises(InvokeFailed) as caught:
            await invoker.invoke(InvokeCall(function="fn", payload=b"{}"))
        self.assertEqual(caught.exception.status, 502)
        self.assertIn("reply is over", caught.exception.detail)

    async def test_no_gzip_asked(self) -> None:
        """
        An Invoke call asks for no encoding: a server that gzips when asked
        answers plain, and the result is the function's.
        """
        api = FakeLambda({"fn": lambda event, context: {"echo": event, "pad": "x" * 4000}})
        invoker = await self.start(EncodingResourceWrapper(api, [GzipEncoderFactory()]))
        result = await invoker.invoke(InvokeCall(function="fn", payload=b'{"a": 1}'))
        self.assertEqual(json.loads(result.payload), {"echo": {"a": 1}, "pad": "x" * 4000})
        [call] = api.calls
        self.assertNotIn("accept-encoding", call.headers)
