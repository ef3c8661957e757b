"""
HTTP/1.1 framing attacks on a real socket, with the exact bytes: each is
refused with the gateway's JSON error (a real status, an C{X-Request-ID}, the
connection closed after), or served as RFC 9112 says.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet.protocol import ClientFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_lambdagw.server.framing import Refused, check_head
from twisted_lambdagw.server.site import GatewaySite

from .loopback import RawClient, real_reactor

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


class Recorder(Resource):
    """
    Answers each request with its path, and keeps what it was given.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes, dict[bytes, list[bytes]], bytes]] = []

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        if getattr(request, "body_too_large", False):
            # As the gateway's resource answers.
            request.setResponseCode(413)
            return b""
        headers = {
            name.lower(): list(values) for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.seen.append((request.method, request.path, headers, request.content.read()))
        return request.path


class Answer:
    """
    What the gateway wrote back on one connection, until it closed it.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.statuses = [int(s) for s in STATUS.findall(data)]

    def error(self) -> dict[str, Any]:
        """
        The one answer, a JSON error: its body, checked against its X-Request-ID.
        """
        head, _, body = self.data.partition(b"\r\n\r\n")
        document: dict[str, Any] = json.loads(body)
        [request_id] = re.findall(rb"\r\nX-Request-ID: ([^\r]+)", head)
        assert document["request_id"] == request_id.decode(), (document, request_id)
        assert b"\r\nConnection: close" in head
        assert b"Content-Type: application/json" in head
        return document


class LoopbackTests(TestCase):
    """
    A GatewaySite on 127.0.0.1 and raw bytes from a client socket.
    """

    def setUp(self) -> None:
        self.reactor = real_reactor()
        self.recorder = Recorder()
        # A long header deadline: no test here may be answered by waiting.
        site = GatewaySite(
            self.recorder, reactor=self.reactor, max_body_size=1024, header_timeout=60
        )
        self.port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    async def send(self, data: bytes) -> Answer:
        client = RawClient(data)
        self.reactor.connectTCP(
            "127.0.0.1", self.port.getHost().port, ClientFactory.forProtocol(lambda: client)
        )
        return Answer(await client.done)

    async def refused(self, data: bytes, status: int = 400) -> dict[str, Any]:
        answer = await self.send(data)
        self.assertEqual(answer.statuses, [status], answer.data)
        self.assertEqual(self.recorder.seen, [])
        return answer.error()

    @property
    def paths(self) -> list[bytes]:
        return [path for _, path, _, _ in self.recorder.seen]

    # Transfer-Encoding and Content-Length (items 2 and 9)

    async def test_identity_smuggling(self) -> None:
        await self.refused(
            b"POST /aws/echo-c/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n"
            b"GET /aws/echo-SMUGGLED/x HTTP/1.1\r\nHost: t\r\n\r\n"
        )

    async def test_transfer_codings_other_than_chunked(self) -> None:
        for fields in [
            b"Transfer-Encoding: identity\r\nContent-Length: 3\r\n",
            b"Transfer-Encoding: gzip\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Transfer-Encoding: chunked, chunked\r\n",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        ]:
            await self.refused(b"POST /x HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n0\r\n\r\n")

    async def test_bad_content_lengths(self) -> None:
        for fields in [
            b"Content-Length: 3\r\nContent-Length: 3\r\n",
            b"Content-Length: 3\r\nContent-Length: 4\r\n",
            b"Content-Length: 3, 3\r\n",
            b"Content-Length: +3\r\n",
            b"Content-Length: 0x3\r\n",
            b"Content-Length: -1\r\n",
        ]:
            await self.refused(b"POST /x HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\nabcd")

    async def test_bare_lf_refused_at_once(self) -> None:
        """
        No waiting for the header deadline (60 s here): 400 at once.
        """
        await self.refused(b"GET /x HTTP/1.1\nHost: t\n\n")
        await self.refused(b"GET /x HTTP/1.1\r\nHost: t\n\r\n")

    async def test_folded_field_refused(self) -> None:
        await self.refused(b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n")

    async def test_chunk_size_overflow(self) -> None:
        error = await self.refused(
            b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"fffffffffffffffffffffff\r\n",
            413,
        )
        self.assertEqual(error["error"], "request body too large")

    async def test_chunks_past_the_cap(self) -> None:
        """
        Chunks over max_body_size (1024 here): 413 and closed, nothing more read.
        """
        answer = await self.send(
            b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        self.assertEqual(answer.statuses, [413])
        self.assertEqual(self.paths, [])

    async def test_chunk_extensions_and_trailers(self) -> None:
        answer = await self.send(
            b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b"\r\n3;name=value\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        self.assertEqual(answer.statuses, [200])
        [(_, _, headers, body)] = self.recorder.seen
        self.assertEqual(body, b"abcde")
        self.assertNotIn(b"x-trailer", headers)

    # Pipelining (item 4) and Connection (item 5)

    async def test_a_thousand_pipelined_in_one_write(self) -> None:
        requests = [b"GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(999)]
        requests.append(b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = await self.send(b"".join(requests))
        self.assertEqual(answer.statuses, [200] * 1000)
        expected = [b"/p%d" % i for i in range(999)] + [b"/last"]
        self.assertEqual(self.paths, expected)
        self.assertEqual(re.findall(rb"\r\n\r\n(/(?:p\d+|last))", answer.data), expected)

    async def test_connection_close_in_any_form(self) -> None:
        for fields in [
            b"Connection: close, x-foo\r\n",
            b"Connection: x-foo,close\r\n",
            b"Connection: x-foo\r\nConnection: close\r\n",
            b"Connection: CLOSE\r\n",
        ]:
            self.recorder.seen.clear()
            answer = await self.send(
                b"GET /first HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n"
                b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            self.assertEqual(answer.statuses, [200], fields)
            self.assertEqual(self.paths, [b"/first"], fields)

    async def test_http_1_0_closes(self) -> None:
        """
        HTTP/1.0 connections close after one answer, keep-alive asked or not (as h11).
        """
        answer = await self.send(
            b"GET /first HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.0\r\n\r\n"
        )
        self.assertEqual(answer.statuses, [200])
        self.assertEqual(self.paths, [b"/first"])

    # Host (item 6)

    async def test_host_required_once_and_valid(self) -> None:
        for fields in [
            b"",
            b"Host: a\r\nHost: b\r\n",
            b"Host: a b/c\r\n",
            b"Host: user@a\r\n",
            b"Host:\r\n",
        ]:
            await self.refused(b"GET /x HTTP/1.1\r\n" + fields + b"\r\n")

    async def test_host_forms_taken(self) -> None:
        for host in [b"gw", b"gw:8080", b"127.0.0.1:1", b"[::1]:8080", b"xn--bcher-kva.example"]:
            answer = await self.send(
                b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
            )
            self.assertEqual(answer.statuses, [200], host)

    async def test_http_1_0_without_host(self) -> None:
        answer = await self.send(b"GET /x HTTP/1.0\r\n\r\n")
        self.assertEqual(answer.statuses, [200])

    # Request targets (item 8)

    async def test_absolute_form(self) -> None:
        answer = await self.send(
            b"POST http://t/aws/echo-1/x HTTP/1.1\r\nHost: other\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nhi"
        )
        self.assertEqual(answer.statuses, [200])
        [(method, path, headers, body)] = self.recorder.seen
        self.assertEqual((method, path, body), (b"POST", b"/aws/echo-1/x", b"hi"))
        self.assertEqual(headers[b"host"], [b"t"])

    async def test_other_target_forms(self) -> None:
        for line in [
            b"CONNECT t:443 HTTP/1.1",
            b"GET t:443 HTTP/1.1",
            b"GET ftp://t/x HTTP/1.1",
            b"GET http://user@t/x HTTP/1.1",
            b"GET x HTTP/1.1",
        ]:
            await self.refused(line + b"\r\nHost: t\r\n\r\n")

    # Limits and versions (item 10)

    async def test_limits(self) -> None:
        await self.refused(b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)
        many = b"".join(b"X-%d: v\r\n" % i for i in range(101))
        await self.refused(b"GET / HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n", 431)
        big = b"X-Big: " + b"v" * 40000 + b"\r\n"
        await self.refused(b"GET / HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n", 431)

    async def test_versions(self) -> None:
        await self.refused(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505)
        await self.refused(b"GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400)

    async def test_malformed_request_line(self) -> None:
        error = await self.refused(b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertTrue(error["error"].startswith("malformed request"), error)

    async def test_refusal_waits_for_the_answer_before_it(self) -> None:
        answer = await self.send(
            b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\n\r\n"
        )
        self.assertEqual(answer.statuses, [200, 400])
        self.assertEqual(self.paths, [b"/first"])


class CheckHeadTests(SynchronousTestCase):
    def test_absolute_without_path(self) -> None:
        head = check_head(b"GET", b"http://t:80?q=1", "1.1", {b"host": [b"x"]})
        self.assertEqual((head.path, head.fields[b"host"]), (b"/?q=1", [b"t:80"]))

    def test_refusal_status(self) -> None:
        with self.assertRaises(Refused) as raised:
            check_head(b"GET", b"/", "0.9", {})
        self.assertEqual(raised.exception.status, 505)
