"""
The gateway frames HTTP/1.1 requests as h11 does.

A generated corpus of requests (good and bad heads, Content-Length and
chunked bodies, several in one write) goes to a L{GatewaySite} and to h11's
server-side connection; both must accept the same requests, with the same
method, target, header fields and body, and refuse at the same request.  The
bytes are given in one read, one byte at a time, and split at every point.

Where the two differ by design, the corpus leaves the case out and
C{test_framing.py} tests the gateway's answer: a repeated, identical
Content-Length and Transfer-Encoding beside Content-Length (refused by the
gateway, taken by h11), empty lines before a request line (skipped by the
gateway, as RFC 9112 section 2.2 allows), a folded field line (refused by
the gateway, unfolded by h11: RFC 9112 section 5.2 allows either), the syntax
of Host's value (checked by the gateway only).
"""

from __future__ import annotations

import json
from typing import Any

import h11
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_lambdagw.server.site import GatewaySite

Seen = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]
"""A request as read: method, target, header fields (lower-case names, in order), body."""


class Echo(Resource):
    """
    Answers with the request as it was read, as JSON.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        fields = [
            [name.decode("latin-1").lower(), value.decode("latin-1")]
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        return json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "uri": request.uri.decode("latin-1"),
                "fields": fields,
                "body": request.content.read().decode("latin-1"),
            }
        ).encode()


def gateway(data: bytes, reads: list[int]) -> tuple[list[Seen], bool]:
    """
    The requests a gateway served from C{data}, given in reads of those sizes,
    and whether it refused one.
    """
    site = GatewaySite(Echo(), reactor=MemoryReactorClock(), max_body_size=1 << 20)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    at = 0
    for size in reads:
        if transport.disconnecting:
            break
        protocol.dataReceived(data[at : at + size])
        at += size
    if at < len(data) and not transport.disconnecting:
        protocol.dataReceived(data[at:])
    answer = transport.value()
    protocol.connectionLost(Failure(ConnectionDone()))
    seen: list[Seen] = []
    refused = False
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body, answer = rest[:length], rest[length:]
        if head.split(b" ", 2)[1] != b"200":
            refused = True
            break
        document: dict[str, Any] = json.loads(body)
        seen.append(
            (
                document["method"].encode("latin-1"),
                document["uri"].encode("latin-1"),
                sorted((n.encode("latin-1"), v.encode("latin-1")) for n, v in document["fields"]),
                document["body"].encode("latin-1"),
            )
        )
    return seen, refused


def reference(data: bytes) -> tuple[list[Seen], bool]:
    """
    The requests h11 reads from C{data}, answering each, and whether it refused one.
    """
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    seen: list[Seen] = []
    current: list[Any] = []
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return seen, False
            if isinstance(event, h11.Request):
                current = [event.method, event.target, sorted(event.headers), b""]
            elif isinstance(event, h11.Data):
                current[3] += event.data
            elif isinstance(event, h11.EndOfMessage):
                seen.append((current[0], current[1], current[2], current[3]))
                connection.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
                connection.send(h11.EndOfMessage())
                if connection.our_state is h11.MUST_CLOSE:
                    return seen, False
                connection.start_next_cycle()
    except h11.RemoteProtocolError:
        return seen, True


FIELDS = [
    b"Host: gw",
    b"Host: 127.0.0.1:8080",
    b"X-Spaced:   padded value \t",
    b"x-lower: v",
    b"X-Repeated: 1",
    b"x-repeated: 2",
    b"Cookie: a=1",
    b"Connection: close",
    b"Connection: x-foo, close",
    b"Connection: keep-alive",
    b"Content-MD5: abc",
    b"Empty:",
    b"X-Latin: caf\xe9",
    b"Transfer-Encoding: identity",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked",
    b"Content-Length: abc",
    b"Content-Length: -1",
    b"No colon here",
    b"Bad Name: x",
    b": no name",
    b"X-Nul: a\x00b",
    b"X-CR: a\rb",
]
LINES = (
    [b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"G(T"],
    [b"/", b"/a/b?c=d&e", b"/%41", b"/lambda/fn/x", b"/a b", b"/caf\xe9"],
    [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.x"],
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """
    One request: a request line, fields, and a body framed by length, chunks or not at all.
    """
    line = b" ".join(draw(st.sampled_from(choices)) for choices in LINES)
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=5))
    if draw(st.integers(0, 5)) != 0 and b"Host: gw" not in fields:
        fields.insert(0, b"Host: gw")
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    has_length = any(
        f.lower().startswith((b"content-length", b"transfer-encoding")) for f in fields
    )
    if framing == "length" and not has_length:
        fields.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked" and not has_length:
        fields.append(b"Transfer-Encoding: chunked")
        cut = draw(st.integers(0, len(body)))
        chunks = [part for part in (body[:cut], body[cut:]) if part]
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in chunks) + b"0\r\n\r\n"
    else:
        body = b""
    return b"\r\n".join([line, *fields]) + b"\r\n\r\n" + body


class DifferentialTests(SynchronousTestCase):
    """
    The gateway and h11 read the same requests from the same bytes.
    """

    def assertSame(self, data: bytes, reads: list[int]) -> None:
        self.assertEqual(gateway(data, reads), reference(data), (data, reads))

    @settings(max_examples=250, deadline=None, derandomize=True)
    @given(st.lists(requests(), min_size=1, max_size=4))
    def test_same_requests_in_one_read(self, sent: list[bytes]) -> None:
        self.assertSame(b"".join(sent), [])

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(requests())
    def test_every_split_point(self, sent: bytes) -> None:
        """
        A request split in two at any byte, and given a byte at a time, reads the same.
        """
        for cut in range(1, len(sent)):
            self.assertSame(sent, [cut])
        self.assertSame(sent, [1] * len(sent))

    @settings(max_examples=10, deadline=None, derandomize=True)
    @given(st.lists(requests(), min_size=1, max_size=5))
    def test_a_thousand_pipelined(self, sent: list[bytes]) -> None:
        """
        1,000 requests in one write: the same ones served, in order.
        """
        self.assertSame(b"".join((sent * 1000)[:1000]), [])

    def test_a_thousand_plain_pipelined(self) -> None:
        data = b"".join(b"GET /p%d HTTP/1.1\r\nHost: gw\r\n\r\n" % i for i in range(1000))
        seen, refused = gateway(data, [])
        self.assertEqual([uri for _, uri, _, _ in seen], [b"/p%d" % i for i in range(1000)])
        self.assertEqual((seen, refused), reference(data))
