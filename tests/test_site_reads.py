"""
The channel answers the same however a request's bytes arrive, and its
response head is twisted.web's bytes, written with the body's first bytes.

Each request is sent twice to a fresh L{GatewaySite}: once in a single read
and once a byte at a time; what comes back must be the same bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from twisted_lambdagw.server.site import GatewayChannel, GatewaySite

REQUEST_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""Each error answer's own id, different in each run."""


class Echo(Resource):
    """
    Answers with what the request was, as JSON, at once.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        document: dict[str, Any] = {
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "version": request.clientproto.decode("latin-1"),
            "headers": sorted(
                [name.decode("latin-1"), [v.decode("latin-1") for v in values]]
                for name, values in request.requestHeaders.getAllRawHeaders()
            ),
            "body": request.content.read().decode("latin-1"),
        }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(document).encode()


def serve(data: bytes, *, byte_at_a_time: bool) -> tuple[bytes, bool]:
    """
    What a fresh site answers to C{data}, and whether it closed the connection.
    """
    site = GatewaySite(Echo(), reactor=MemoryReactorClock(), max_body_size=64)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
    assert protocol is not None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    protocol.makeConnection(transport)
    if byte_at_a_time:
        for i in range(len(data)):
            if transport.disconnecting:
                break  # a TCP transport reads no more once it is closing
            protocol.dataReceived(data[i : i + 1])
    else:
        protocol.dataReceived(data)
    answer = b"\r\n".join(
        line for line in transport.value().split(b"\r\n") if not line.startswith(b"Date: ")
    )
    answer = REQUEST_ID.sub(b"<request id>", answer)
    closed = transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    return answer, closed


GOOD_HEADERS = [
    b"Host: gw",
    b"X-Spaced:   padded value \t",
    b"x-lower: v",
    b"X-Repeated: 1",
    b"x-repeated: 2",
    b"Cookie: a=1",
    b"Connection: close",
    b"Expect: 100-continue",
    b"Content-MD5: abc",
    b"Empty:",
]
BAD_HEADERS = [
    b"No colon here",
    b" folded continuation",
    b"Bad Name: x",
    b"X(y): 1",
    b": no name",
    b"X-Bare: a\nb",
    b"X-Bare-CR: a\rb",
    b"X-Nul: a\x00b",
    b"Content-Length: abc",
    b"Content-Length: 1",
    b"Content-Length: 100",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"X-Latin: caf\xe9",
]
GOOD_LINES = (
    [b"GET", b"POST", b"PUT", b"DELETE", b"get"],
    [b"/", b"/a/b?c=d&e", b"/%41%zz", b"/lambda/fn/x"],
    [b"HTTP/1.1", b"HTTP/1.0"],
)
BAD_LINES = ([b"G(T", b""], [b"/x\x7fy", b"/caf\xe9", b"", b"/a b"], [b"HTTP/2.0", b"http/1.1"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """
    A request, half the time one made only of parts the gateway takes as they are.
    """
    plain = draw(st.booleans())
    parts = [
        draw(st.sampled_from(good if plain else good + bad))
        for good, bad in zip(GOOD_LINES, BAD_LINES, strict=True)
    ]
    line = b" ".join(parts)
    choices = GOOD_HEADERS if plain else GOOD_HEADERS + BAD_HEADERS
    headers = draw(st.lists(st.sampled_from(choices), max_size=6))
    body = draw(st.binary(max_size=80))
    if draw(st.booleans()):
        headers.append(b"Content-Length: %d" % len(body))
    elif body and draw(st.booleans()):
        headers.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    prefix = b"\r\n" if not plain and draw(st.integers(0, 9)) == 0 else b""
    return prefix + b"\r\n".join([line, *headers]) + b"\r\n\r\n" + body


class SamePathsTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(requests(), min_size=1, max_size=3))
    def test_one_read_answers_as_byte_at_a_time(self, sent: list[bytes]) -> None:
        """
        Any request, or pipelined requests, get the same answer however the bytes arrive.
        """
        data = b"".join(sent)
        self.assertEqual(serve(data, byte_at_a_time=False), serve(data, byte_at_a_time=True), data)

    def test_limits_are_the_same(self) -> None:
        """
        At and past the header count and head size limits, the same answers.
        """
        many = b"".join(b"X-%d: v\r\n" % i for i in range(100))
        big = b"X-Big: " + b"x" * (32 * 1024 - 100)
        for head in [
            b"GET / HTTP/1.1\r\n" + many,
            b"GET / HTTP/1.1\r\n" + many + b"X-One-More: v\r\n",
            b"GET / HTTP/1.1\r\n" + big[:-40] + b"\r\n",
            b"GET / HTTP/1.1\r\n" + big + b"\r\n",
            b"GET /" + b"a" * (32 * 1024) + b" HTTP/1.1\r\n",
        ]:
            data = head + b"\r\n"
            self.assertEqual(
                serve(data, byte_at_a_time=False), serve(data, byte_at_a_time=True), head[:40]
            )


class HeadWriteTests(SynchronousTestCase):
    def test_same_bytes_in_one_write(self) -> None:
        """
        A response head goes out as twisted.web's HTTPChannel writes it, in one write.
        """
        headers = Headers({b"Content-Type": [b"application/json"], b"Set-Cookie": [b"a", b"b"]})
        written = []
        for channel in (GatewayChannel(), HTTPChannel()):
            transport = StringTransport()
            writes: list[bytes] = []
            transport.write = writes.append  # type: ignore[method-assign]
            transport.writeSequence = writes.extend  # type: ignore[method-assign]
            channel.makeConnection(transport)
            channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", headers)
            written.append(writes)
            channel.connectionLost(Failure(ConnectionDone()))
        ours, theirs = written
        self.assertEqual(len(ours), 1)
        self.assertEqual(ours[0], b"".join(theirs))
        self.assertIn(b"Set-Cookie: a\r\nSet-Cookie: b\r\n", ours[0])


class Answers(Resource):
    """
    Answers as the path says: a body, none, a chunked body, or a head alone, the rest later.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.open: list[Request] = []

    def render(self, request: Request) -> bytes | int:
        path = request.path
        if path == b"/body":
            request.setHeader(b"content-length", b"5")
            return b"hello"
        if path == b"/empty":
            return b""
        if path == b"/no-content":
            request.setResponseCode(204)
            return b""
        if path == b"/chunked":
            request.write(b"first")
            request.write(b"second")
            request.finish()
            return NOT_DONE_YET
        request.write(b"")  # /later: the head now, the body when it comes
        self.open.append(request)
        return NOT_DONE_YET


class ResponseWriteTests(SynchronousTestCase):
    """
    A response's head leaves with its body's first bytes, in one write, and
    never waits for a write that may not come.
    """

    def serve(self, request: bytes, site: Site | None = None) -> tuple[list[bytes], Answers]:
        """
        The writes a site's connection makes while it answers C{request}.
        """
        resource = Answers()
        if site is None:
            site = GatewaySite(resource, reactor=MemoryReactorClock())
        else:
            site.resource = resource
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
        assert protocol is not None
        transport = StringTransport()
        writes: list[bytes] = []
        transport.write = writes.append  # type: ignore[method-assign]
        transport.writeSequence = writes.extend  # type: ignore[method-assign]
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return writes, resource

    def test_head_and_body_in_one_write(self) -> None:
        writes, _ = self.serve(b"GET /body HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(len(writes), 1, writes)
        self.assertTrue(writes[0].startswith(b"HTTP/1.1 200 OK\r\n"), writes)
        self.assertIn(b"Content-Length: 5\r\n", writes[0])
        self.assertTrue(writes[0].endswith(b"\r\n\r\nhello"), writes)

    def test_head_without_a_body(self) -> None:
        """
        No body to wait for (HEAD, 204, an empty one): the head leaves alone, at once.
        """
        for request, status in [
            (b"HEAD /body HTTP/1.1\r\nHost: gw\r\n\r\n", b"200"),
            (b"GET /no-content HTTP/1.1\r\nHost: gw\r\n\r\n", b"204"),
            (b"GET /empty HTTP/1.1\r\nHost: gw\r\n\r\n", b"200"),
        ]:
            writes, _ = self.serve(request)
            self.assertEqual(len(writes), 1, (request, writes))
            self.assertTrue(writes[0].startswith(b"HTTP/1.1 " + status), writes)
            self.assertTrue(writes[0].endswith(b"\r\n\r\n"), writes)

    def test_chunked_head_with_first_chunk(self) -> None:
        writes, _ = self.serve(b"GET /chunked HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertTrue(writes[0].startswith(b"HTTP/1.1 200 OK\r\n"), writes)
        self.assertIn(b"Transfer-Encoding: chunked\r\n", writes[0])
        self.assertTrue(writes[0].endswith(b"\r\n\r\n5\r\nfirst\r\n"), writes)
        self.assertEqual(b"".join(writes[1:]), b"6\r\nsecond\r\n0\r\n\r\n")

    def test_head_sent_before_a_later_body(self) -> None:
        """
        A head written on its own (a stream's, before its first event) is sent
        when it is written, not held until the body comes.
        """
        writes, resource = self.serve(b"GET /later HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(len(writes), 1, writes)
        self.assertTrue(writes[0].startswith(b"HTTP/1.1 200 OK\r\n"), writes)
        self.assertTrue(writes[0].endswith(b"\r\n\r\n"), writes)
        [request] = resource.open
        request.write(b"event")
        request.finish()
        self.assertEqual(b"".join(writes[1:]), b"5\r\nevent\r\n0\r\n\r\n")

    def test_other_request_factories(self) -> None:
        """
        An embedder's own request class, which does not send held heads, gets
        its head written at once, as twisted.web writes it.
        """
        site = GatewaySite(Resource(), reactor=MemoryReactorClock())
        site.requestFactory = Request
        writes, _ = self.serve(b"GET /body HTTP/1.1\r\nHost: gw\r\n\r\n", site)
        self.assertEqual(len(writes), 2, writes)
        self.assertIn(b"Content-Length: 5\r\n", writes[0])
        self.assertTrue(writes[0].endswith(b"\r\n\r\n"), writes)
        self.assertEqual(writes[1], b"hello")
