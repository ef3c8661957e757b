"""
The Invoke calls' HTTP/1.1 agent, byte by byte: what it writes, how it reads
every framing of an answer, when it keeps a connection and when it closes it.

The connections are memory transports under a memory reactor, made by the
agent's real endpoints; the answers are written out in full here, so every
test says exactly what the server sent.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from treq.content import collect
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import FileBodyProducer, ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import provider

from tests.typed import as_reactor
from twisted_lambdagw.invokers.aws.agent import BytesProducer, KeepAliveAgent
from twisted_lambdagw.invokers.aws.connection import (
    MAX_HEAD_BYTES,
    MAX_INTERIM,
    BadResponse,
    whole_body,
)
from twisted_lambdagw.invokers.aws.upstream import EndpointCache, ReplyTooLarge, read_body

from .test_deadlines import CountingClock

URL = b"http://127.0.0.1:9000/2015-03-31/functions/fn/invocations?Qualifier=live"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Reader(Protocol):
    """
    A body's reader: what it was given, and how the body ended.
    """

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


class CountingReactor(CountingClock, MemoryReactorClock):
    """
    A memory reactor that counts the timed calls made on it.
    """


class Wire:
    """
    A L{KeepAliveAgent} whose connections are memory transports, connected by hand.
    """

    def __init__(self, max_idle: int = 10, idle_timeout: float = 60) -> None:
        self.reactor = CountingReactor()
        self.agent = KeepAliveAgent(
            self.reactor, EndpointCache(as_reactor(self.reactor)), max_idle, idle_timeout
        )
        self.connections: list[tuple[Any, StringTransport]] = []

    def request(
        self,
        body: bytes | None = b"{}",
        url: bytes = URL,
        method: bytes = b"POST",
        headers: Headers | None = None,
    ) -> Deferred[IResponse]:
        producer = BytesProducer(body) if body is not None else None
        requested = self.agent.request(method, url, headers, producer)
        while self.reactor.tcpClients:
            _, _, factory, _, _ = self.reactor.tcpClients.pop(0)
            protocol: Any = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            self.connections.append((protocol, transport))
        return requested

    def serve(self, count: int) -> None:
        """
        C{count} requests at once, on as many connections, each answered and read.
        """
        calls = [self.request() for _ in range(count)]
        for index, requested in enumerate(calls):
            self.answer(OK, index)
            requested.addCallback(lambda response: response.deliverBody(Reader()))

    def sent(self, index: int = -1) -> bytes:
        """
        What went out on a connection since last asked.
        """
        transport = self.connections[index][1]
        data: bytes = transport.value()
        transport.clear()
        return data

    def answer(self, data: bytes, index: int = -1) -> None:
        self.connections[index][0].dataReceived(data)

    def lose(self, index: int = -1, reason: Exception | None = None) -> None:
        self.connections[index][0].connectionLost(Failure(reason or ConnectionLost()))

    def transport(self, index: int = -1) -> StringTransport:
        return self.connections[index][1]


class RequestTests(SynchronousTestCase):
    """
    The request leaves whole, in one write.
    """

    def test_one_write(self) -> None:
        """
        Request line, Host, the headers given, Content-Length and the body, in that order.
        """
        wire = Wire()
        headers = Headers({b"X-Amz-Date": [b"20250101T000000Z"], b"X-Two": [b"a", b"b"]})
        wire.request(b'{"n": 1}', headers=headers)
        self.assertEqual(
            wire.transport().io.getvalue(),
            b"POST /2015-03-31/functions/fn/invocations?Qualifier=live HTTP/1.1\r\n"
            b"Host: 127.0.0.1:9000\r\n"
            b"X-Amz-Date: 20250101T000000Z\r\n"
            b"X-Two: a\r\nX-Two: b\r\n"
            b'Content-Length: 8\r\n\r\n{"n": 1}',
        )

    def test_host_header(self) -> None:
        """
        The Host header is as twisted.web's Agent writes it (and SigV4 signs it):
        no default port, IPv6 literals in brackets.
        """
        for url, host in [
            (b"http://127.0.0.1/x", b"127.0.0.1"),
            (b"http://127.0.0.1:80/x", b"127.0.0.1"),
            (b"http://127.0.0.1:8080/x", b"127.0.0.1:8080"),
            (b"http://127.0.0.1:443/x", b"127.0.0.1:443"),
            (b"http://[::1]:9001/x", b"[::1]:9001"),
        ]:
            wire = Wire()
            wire.request(url=url)
            head = wire.sent().split(b"\r\n")
            self.assertEqual(head[1], b"Host: " + host, url)

    def test_no_body(self) -> None:
        """
        A POST without a body says Content-Length: 0; a GET says nothing of it.
        """
        wire = Wire()
        wire.request(None)
        self.assertIn(b"\r\nContent-Length: 0\r\n\r\n", wire.sent())
        wire.answer(OK)
        wire.request(None, method=b"GET")
        self.assertNotIn(b"Content-Length", wire.sent())

    def test_query_without_path(self) -> None:
        """
        A URL with a query but no path asks for "/" with that query.
        """
        wire = Wire()
        wire.request(url=b"http://127.0.0.1:9000?a=1")
        self.assertTrue(wire.sent().startswith(b"POST /?a=1 HTTP/1.1\r\n"))

    def test_refused(self) -> None:
        """
        What cannot be sent as asked fails the request and opens no connection.
        """
        wire = Wire()
        for method, url, body, error in [
            (b"POST", b"http://127.0.0.1/a b", BytesProducer(b""), ValueError),
            (b"POST", b"http://127.0.0.1/a\r\nX: y", BytesProducer(b""), ValueError),
            (b"POST", b"http://127.0.0.1/a#frag", BytesProducer(b""), ValueError),
            (b"PO ST", b"http://127.0.0.1/a", BytesProducer(b""), ValueError),
            (b"HEAD", b"http://127.0.0.1/a", None, ValueError),
            (b"POST", b"http://alice:s3cret@127.0.0.1/a", BytesProducer(b""), ValueError),
            (b"POST", b"http://127.0.0.1/a", FileBodyProducer(BytesIO(b"")), TypeError),
        ]:
            failure = self.failureResultOf(wire.agent.request(method, url, None, body), error)
            self.assertNotIn("s3cret", str(failure.value))
        self.assertEqual(wire.reactor.tcpClients, [])

    def test_connect_failure(self) -> None:
        """
        A refused connection fails the request with the endpoint's error.
        """
        wire = Wire()
        requested = wire.agent.request(b"POST", URL, None, BytesProducer(b"{}"))
        [(_, _, factory, _, _)] = wire.reactor.tcpClients
        connector = wire.reactor.connectors[0]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        self.failureResultOf(requested, ConnectionRefusedError)

    def test_no_log_lines(self) -> None:
        """
        A connection opened and closed logs nothing (twisted.web's pool logs
        "Starting factory" and "Stopping factory" for each).
        """
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        wire = Wire()
        requested = wire.request()
        wire.lose()
        self.failureResultOf(requested, ResponseNeverReceived)
        self.assertEqual([formatEvent(e) for e in events], [])


class ResponseTests(SynchronousTestCase):
    """
    The answer's status, headers and body, however the bytes arrive.
    """

    def body(self, wire: Wire, requested: Deferred[IResponse]) -> tuple[IResponse, Reader]:
        response = self.successResultOf(requested)
        reader = Reader()
        response.deliverBody(reader)
        return response, reader

    def test_status_and_headers(self) -> None:
        """
        Code, phrase, version, repeated headers in order, the length given.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(
            b"HTTP/1.1 429 Too Many Requests\r\nX-Amzn-ErrorType: TooManyRequestsException\r\n"
            b"Set-Cookie: a=1\r\nset-cookie:  b=2 \r\nContent-Length: 2\r\n\r\n{}"
        )
        response, reader = self.body(wire, requested)
        self.assertEqual(
            (response.code, response.phrase, response.version, response.length),
            (429, b"Too Many Requests", (b"HTTP", 1, 1), 2),
        )
        self.assertEqual(response.headers.getRawHeaders(b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(
            response.headers.getRawHeaders(b"x-amzn-errortype"), [b"TooManyRequestsException"]
        )
        self.assertEqual(response.request.method, b"POST")
        self.assertEqual(response.request.absoluteURI, URL)
        self.assertEqual(b"".join(reader.data), b"{}")
        assert reader.reason is not None
        reader.reason.trap(ResponseDone)

    @given(
        body=st.binary(max_size=300),
        cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    )
    def test_content_length_in_pieces(self, body: bytes, cuts: list[int]) -> None:
        """
        A Content-Length answer cut anywhere, head included, is the same
        answer, and the connection is kept for the next request.
        """
        wire = Wire()
        requested = wire.request()
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        for piece in pieces(answer, cuts):
            wire.answer(piece)
        response, reader = self.body(wire, requested)
        self.assertEqual((response.length, b"".join(reader.data)), (len(body), body))
        assert reader.reason is not None
        reader.reason.trap(ResponseDone)
        self.assertEqual(wire.agent.idle_connections(), 1)

    @given(
        chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
        cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=10),
        extension=st.sampled_from([b"", b";name=value", b";x"]),
    )
    def test_chunked_in_pieces(
        self, chunks: list[bytes], cuts: list[int], extension: bytes
    ) -> None:
        """
        A chunked answer (how Lambda streams) cut anywhere is its chunks'
        bytes, chunk extensions and trailers read and dropped.
        """
        wire = Wire()
        requested = wire.request()
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for chunk in chunks:
            answer += b"%x%s\r\n%s\r\n" % (len(chunk), extension, chunk)
        answer += b"0\r\nX-Trailer: t\r\n\r\n"
        for piece in pieces(answer, cuts):
            wire.answer(piece)
        response, reader = self.body(wire, requested)
        self.assertIs(response.length, UNKNOWN_LENGTH)
        self.assertEqual(b"".join(reader.data), b"".join(chunks))
        assert reader.reason is not None
        reader.reason.trap(ResponseDone)
        self.assertEqual(wire.agent.idle_connections(), 1)

    def test_body_as_it_comes(self) -> None:
        """
        Once a reader is given, each piece reaches it as it arrives; until
        then the socket is paused, and the pieces kept.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        response = self.successResultOf(requested)
        self.assertEqual(wire.transport().producerState, "paused")
        reader = Reader()
        response.deliverBody(reader)
        self.assertEqual(wire.transport().producerState, "producing")
        self.assertEqual(reader.data, [b"abc"])
        wire.answer(b"2\r\nde\r\n")
        self.assertEqual(reader.data, [b"abc", b"de"])
        self.assertIsNone(reader.reason)
        wire.answer(b"0\r\n\r\n")
        assert reader.reason is not None
        reader.reason.trap(ResponseDone)

    def test_whole_answer_not_paused(self) -> None:
        """
        An answer that came whole in one read never pauses the socket.
        """
        wire = Wire()
        requested = wire.request()
        pauses: list[str] = []
        transport = wire.transport()
        transport.pauseProducing = lambda: pauses.append("pause")  # type: ignore[method-assign]
        wire.answer(OK)
        self.body(wire, requested)
        self.assertEqual(pauses, [])

    def test_reader_pauses(self) -> None:
        """
        The reader's transport pauses and resumes the socket (backpressure).
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        _, reader = self.body(wire, requested)
        assert reader.transport is not None
        reader.transport.pauseProducing()  # type: ignore[attr-defined]
        self.assertEqual(wire.transport().producerState, "paused")
        reader.transport.resumeProducing()  # type: ignore[attr-defined]
        self.assertEqual(wire.transport().producerState, "producing")

    def test_no_body(self) -> None:
        """
        204 and 304 answers and Content-Length: 0 have no body, and keep the connection.
        """
        for method, answer in [
            (b"POST", b"HTTP/1.1 204 No Content\r\n\r\n"),
            (b"GET", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
            (b"POST", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]:
            wire = Wire()
            requested = wire.request(None, method=method)
            wire.answer(answer)
            response, reader = self.body(wire, requested)
            self.assertEqual((response.length, reader.data), (0, []), answer)
            assert reader.reason is not None
            reader.reason.trap(ResponseDone)
            self.assertEqual(wire.agent.idle_connections(), 1)

    def test_interim_answers_skipped(self) -> None:
        """
        1xx answers before the real one are read and dropped.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertNoResult(requested)
        wire.answer(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK)
        response, reader = self.body(wire, requested)
        self.assertEqual((response.code, reader.data), (200, [b"{}"]))

    def test_until_close(self) -> None:
        """
        Without a length, the body is everything until the server closes:
        PotentialDataLoss at the end, as twisted.web says it, and the
        connection is not kept.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\n\r\nsome")
        _, reader = self.body(wire, requested)
        wire.answer(b" more")
        wire.lose(reason=ConnectionDone())
        self.assertEqual(b"".join(reader.data), b"some more")
        assert reader.reason is not None
        reader.reason.trap(PotentialDataLoss)
        self.assertEqual(wire.agent.idle_connections(), 0)

    def test_gzip_body_read_by_treq(self) -> None:
        """
        treq's collect reads a body that came before it asked.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(OK)
        got: list[bytes] = []
        self.successResultOf(collect(self.successResultOf(requested), got.append))
        self.assertEqual(got, [b"{}"])


class WholeBodyTests(SynchronousTestCase):
    """
    L{whole_body}: a body all in and unread is taken in one piece, once;
    anything else is left to L{IResponse.deliverBody}.
    """

    @given(
        chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
        cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=10),
        chunked=st.booleans(),
    )
    def test_taken_whole(self, chunks: list[bytes], cuts: list[int], chunked: bool) -> None:
        """
        However the answer came in, a body all in is its bytes, and only
        once: it cannot be delivered again after.  The connection is kept.
        """
        wire = Wire()
        requested = wire.request()
        body = b"".join(chunks)
        if chunked:
            answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            answer += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        else:
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        for piece in pieces(answer, cuts):
            wire.answer(piece)
        response = self.successResultOf(requested)
        self.assertEqual(whole_body(response), body)
        self.assertIsNone(whole_body(response))
        with self.assertRaises(RuntimeError):
            response.deliverBody(Reader())
        self.assertEqual(wire.agent.idle_connections(), 1)

    def test_not_all_in(self) -> None:
        """
        A body still arriving is not taken: a reader gets all of it after.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}")
        response = self.successResultOf(requested)
        self.assertIsNone(whole_body(response))
        reader = Reader()
        response.deliverBody(reader)
        wire.answer(b"[]")
        self.assertEqual(b"".join(reader.data), b"{}[]")
        assert reader.reason is not None
        reader.reason.trap(ResponseDone)

    def test_not_ended_well(self) -> None:
        """
        A body that ended with the connection (no length, or cut short) is
        not taken: its reader hears how it ended.
        """
        for head, reason in [
            (b"HTTP/1.1 200 OK\r\n\r\n{}", PotentialDataLoss),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}", ResponseFailed),
        ]:
            wire = Wire()
            requested = wire.request()
            wire.answer(head)
            wire.lose()
            response = self.successResultOf(requested)
            self.assertIsNone(whole_body(response))
            reader = Reader()
            response.deliverBody(reader)
            self.assertEqual(b"".join(reader.data), b"{}")
            assert reader.reason is not None
            reader.reason.trap(reason)

    def test_delivered(self) -> None:
        """
        A body already given to a reader is not taken again.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(OK)
        response = self.successResultOf(requested)
        response.deliverBody(Reader())
        self.assertIsNone(whole_body(response))

    def test_other_responses(self) -> None:
        """
        Anything but this agent's answer is not read here.
        """
        self.assertIsNone(whole_body(None))
        self.assertIsNone(whole_body(object()))


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    C{data} cut at the given offsets (those past its end ignored).
    """
    offsets = sorted({c for c in cuts if c < len(data)})
    return [data[a:b] for a, b in zip([0, *offsets], [*offsets, len(data)], strict=True)]


class BrokenAnswerTests(SynchronousTestCase):
    """
    What is not a readable HTTP/1.1 answer fails the call and closes the connection.
    """

    def test_bad_heads(self) -> None:
        """
        A bad status line, header line or Content-Length, or a protocol
        switch: ResponseFailed saying what was wrong, connection aborted.
        """
        for answer, says in [
            (b"HTTP/2 200 OK\r\n\r\n", "Expected dot"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "Invalid response status"),
            (b"ICY 200 OK\r\n\r\n", "Expected HTTP/"),
            (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "Invalid header token"),
            (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "Invalid header token"),
            (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "Unexpected space"),
            (b"HTTP/1.1 200 OK\r\nX(y): 1\r\n\r\n", "Invalid header token"),
            (b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "Invalid header token"),
            # Header injection: a bare LF or CR, or a NUL, inside a value.
            (b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n", "Missing expected CR"),
            (b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\n\r\n", "Missing expected LF"),
            (b"HTTP/1.1 200 OK\r\nX-A: 1\x00\r\n\r\n", "Invalid header value char"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", "Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", "Duplicate"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", "Duplicate"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n", "Content-Length"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "overflow"),
            # A length and chunking together: a smuggling attempt or a broken proxy.
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
                "Content-Length can't be present with Transfer-Encoding",
            ),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
            (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n", "Content-Encoding"),
            (b"HTTP/1.1 200 OK\r\nContent-Encoding: identity, br\r\n\r\n", "Content-Encoding"),
        ]:
            wire = Wire()
            requested = wire.request()
            wire.answer(answer)
            failure = self.failureResultOf(requested, ResponseFailed)
            [reason] = failure.value.reasons
            self.assertIsInstance(reason.value, BadResponse)
            self.assertIn(says, str(reason.value))
            self.assertTrue(wire.transport().disconnecting, answer)

    def test_head_too_long(self) -> None:
        """
        A head past the bound fails the call, however it arrives.
        """
        for chunk in (b"X-Long: " + b"x" * MAX_HEAD_BYTES, b"X: y\r\n" * 1000):
            wire = Wire()
            requested = wire.request()
            wire.answer(b"HTTP/1.1 200 OK\r\n")
            for _ in range(MAX_HEAD_BYTES // len(chunk) + 1):
                wire.answer(chunk)
            self.failureResultOf(requested, ResponseFailed)
            self.assertTrue(wire.transport().disconnecting)

    def test_bad_chunk(self) -> None:
        """
        A bad chunk size or a chunk without its CRLF ends the body with ResponseFailed.
        """
        for rest in (
            b"zz\r\n",
            b"2\r\nabXY",
            b"1" * 5000,
            b"-1\r\n",
            b"0x2\r\nab\r\n",
            b"fffffffffffffffffffffff\r\n",
            b" 2\r\nab\r\n",
            b"2\nab\r\n",
        ):
            wire = Wire()
            requested = wire.request()
            wire.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            reader = Reader()
            self.successResultOf(requested).deliverBody(reader)
            wire.answer(rest)
            assert reader.reason is not None
            reader.reason.trap(ResponseFailed)
            self.assertTrue(wire.transport().disconnecting, rest)

    def test_interim_storm(self) -> None:
        """
        More than C{MAX_INTERIM} 1xx answers fail the call, however small each is.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 100 Continue\r\n\r\n" * MAX_INTERIM)
        self.assertNoResult(requested)
        wire.answer(b"HTTP/1.1 102 Processing\r\n\r\n" * 1000)
        failure = self.failureResultOf(requested, ResponseFailed)
        self.assertIn("interim", str(failure.value.reasons[0].value))
        self.assertTrue(wire.transport().disconnected)

    def test_encoded_body_unread(self) -> None:
        """
        A body with a Content-Encoding is refused before any of it is taken:
        the call fails and the connection is aborted.
        """
        for coding in (b"gzip", b"gzip, gzip", b"br", b"identity, deflate"):
            wire = Wire()
            requested = wire.request()
            wire.answer(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: 4\r\n\r\nbomb" % coding
            )
            failure = self.failureResultOf(requested, ResponseFailed)
            self.assertIn("Content-Encoding", str(failure.value.reasons[0].value))
            self.assertTrue(wire.transport().disconnected, coding)
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}")
        self.assertEqual(whole_body(self.successResultOf(requested)), b"{}")

    def test_lost_before_answer(self) -> None:
        """
        A connection lost before the answer fails the call with
        ResponseNeverReceived (the request may have been read).
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 20")
        wire.lose()
        failure = self.failureResultOf(requested, ResponseNeverReceived)
        [reason] = failure.value.reasons
        reason.trap(ConnectionLost)

    def test_lost_in_body(self) -> None:
        """
        A connection lost in the middle of a body ends it with ResponseFailed.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        reader = Reader()
        self.successResultOf(requested).deliverBody(reader)
        wire.lose()
        assert reader.reason is not None
        reader.reason.trap(ResponseFailed)
        self.assertEqual(reader.data, [b"abc"])

    def test_lost_before_reader(self) -> None:
        """
        A body that failed before anyone asked for it fails its reader when one comes.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        wire.lose()
        reader = Reader()
        self.successResultOf(requested).deliverBody(reader)
        self.assertEqual(reader.data, [b"abc"])
        assert reader.reason is not None
        reader.reason.trap(ResponseFailed)

    def test_delivered_once(self) -> None:
        """
        A body goes to one reader only.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(OK)
        response = self.successResultOf(requested)
        response.deliverBody(Reader())
        self.assertRaises(RuntimeError, response.deliverBody, Reader())


class ReuseTests(SynchronousTestCase):
    """
    Which connections are kept for the next request, and for how long.
    """

    def test_reused(self) -> None:
        """
        A connection whose answer was read whole carries the next request.
        """
        wire = Wire()
        for _ in range(3):
            requested = wire.request()
            self.assertTrue(wire.sent().startswith(b"POST "))
            wire.answer(OK)
            self.successResultOf(requested).deliverBody(Reader())
        self.assertEqual(len(wire.connections), 1)

    def test_back_before_the_reader_hears(self) -> None:
        """
        The connection is idle again before the body's end reaches the reader,
        so a request made at that moment reuses it.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        response = self.successResultOf(requested)
        idle_when_told: list[int] = []

        class Next(Reader):
            def connectionLost(self, reason: Failure = connectionDone) -> None:
                idle_when_told.append(wire.agent.idle_connections())

        response.deliverBody(Next())
        wire.answer(b"{}")
        self.assertEqual(idle_when_told, [1])

    def test_not_reused(self) -> None:
        """
        Connection: close, HTTP/1.0, and bytes past the body: the connection
        is closed after the answer.
        """
        for answer in [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            OK + b"HTTP/1.1 200 OK\r\n",
        ]:
            wire = Wire()
            requested = wire.request()
            wire.answer(answer)
            reader = Reader()
            self.successResultOf(requested).deliverBody(reader)
            self.assertEqual(reader.data, [b"{}"])
            self.assertEqual(wire.agent.idle_connections(), 0, answer)
            self.assertTrue(wire.transport().disconnecting, answer)

    def test_half_read_body_closes(self) -> None:
        """
        A body given up on half read (the gateway's bound) closes its connection.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 1500)
        reading = Deferred.fromCoroutine(read_body(self.successResultOf(requested), limit=1000))
        self.failureResultOf(reading, ReplyTooLarge)
        self.assertTrue(wire.transport().disconnecting)
        wire.lose()
        self.assertEqual(wire.agent.idle_connections(), 0)

    def test_read_body_then_over(self) -> None:
        """
        An answer read whole is kept even if its reader then refuses it: the
        connection is clean.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001)
        reading = Deferred.fromCoroutine(read_body(self.successResultOf(requested), limit=1000))
        self.failureResultOf(reading, ReplyTooLarge)
        self.assertFalse(wire.transport().disconnecting)
        self.assertEqual(wire.agent.idle_connections(), 1)

    def test_stop_after_end_leaves_connection(self) -> None:
        """
        A reader that stops its transport after the body ended touches no
        connection: it may be carrying another request by then.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(OK)
        reader = Reader()
        self.successResultOf(requested).deliverBody(reader)
        assert reader.transport is not None
        wire.request()
        reader.transport.stopProducing()  # type: ignore[attr-defined]
        self.assertFalse(wire.transport().disconnecting)
        self.assertEqual(len(wire.connections), 1)

    def test_cancel(self) -> None:
        """
        Cancelling a call before its answer aborts its connection.
        """
        wire = Wire()
        requested = wire.request()
        requested.cancel()
        self.failureResultOf(requested, CancelledError)
        self.assertTrue(wire.transport().disconnected)
        wire.lose()
        wire.request()
        self.assertEqual(len(wire.connections), 2)

    def test_stray_bytes_while_idle(self) -> None:
        """
        Bytes from the server while nothing was asked: the connection is dropped.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(OK)
        self.successResultOf(requested).deliverBody(Reader())
        wire.answer(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(wire.transport().disconnecting)
        wire.request()
        self.assertEqual(len(wire.connections), 2)

    def test_closed_by_server_while_idle(self) -> None:
        """
        An idle connection the server closes leaves the idle list at once.
        """
        wire = Wire()
        requested = wire.request()
        wire.answer(OK)
        self.successResultOf(requested).deliverBody(Reader())
        wire.lose(reason=ConnectionDone())
        self.assertEqual(wire.agent.idle_connections(), 0)
        wire.request()
        self.assertEqual(len(wire.connections), 2)

    def test_most_recent_first(self) -> None:
        """
        The connection last used carries the next request (the others can time out).
        """
        wire = Wire()
        first, second = wire.request(), wire.request()
        wire.answer(OK, 1)
        self.successResultOf(second).deliverBody(Reader())
        wire.answer(OK, 0)
        self.successResultOf(first).deliverBody(Reader())
        wire.sent(0), wire.sent(1)
        wire.request()
        self.assertTrue(wire.sent(0).endswith(b"{}"))
        self.assertEqual(wire.sent(1), b"")

    def test_idle_bound(self) -> None:
        """
        Past C{max_idle_per_host} idle connections, one coming back is closed.
        """
        wire = Wire(max_idle=2)
        wire.serve(3)
        self.assertEqual(wire.agent.idle_connections(), 2)
        self.assertEqual([t.disconnecting for _, t in wire.connections], [False, False, True])

    def test_idle_timeout(self) -> None:
        """
        An idle connection closes at the idle timeout after its last use (each
        use starts it again), with one timed call made for all the requests.
        """
        wire = Wire(idle_timeout=30)
        for _ in range(20):
            wire.serve(1)
            wire.reactor.advance(1)
        self.assertEqual(len(wire.connections), 1)
        self.assertEqual(wire.reactor.made, 1)
        wire.reactor.advance(28.75)
        self.assertFalse(wire.transport().disconnecting)
        wire.reactor.advance(0.25)
        self.assertTrue(wire.transport().disconnecting)
        self.assertEqual(wire.agent.idle_connections(), 0)

    def test_close_cached_connections(self) -> None:
        """
        Closing closes every idle connection and fires once all are gone.
        """
        wire = Wire()
        wire.serve(2)
        closed = wire.agent.closeCachedConnections()
        self.assertEqual([t.disconnecting for _, t in wire.connections], [True, True])
        self.assertNoResult(closed)
        wire.lose(0, ConnectionDone())
        wire.lose(1, ConnectionDone())
        self.successResultOf(closed)
        self.assertEqual(wire.reactor.getDelayedCalls(), [])
