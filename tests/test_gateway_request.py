"""
How a L{GatewayRequest} starts its response: twisted.web's Date header and
no Server header, with twisted.web's resource lookup unchanged (encoders,
C{*} requests, errors while looking up).
"""

from __future__ import annotations

import gzip
import time

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, Request

from twisted_lambdagw.server.site import GatewaySite

BODY = b"hello, " * 40


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return BODY


class Broken(Resource):
    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        raise RuntimeError("no child for you")


def answer(site: GatewaySite, request: bytes) -> tuple[bytes, dict[bytes, list[bytes]], bytes]:
    """
    The status line, headers (by lower-case name) and body C{site} answers C{request} with.
    """
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    protocol.connectionLost(Failure(ConnectionDone()))
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers.setdefault(name.lower(), []).append(value)
    return status, headers, body


class ResponseStartTests(SynchronousTestCase):
    def test_date_is_now(self) -> None:
        """
        The Date header tells the current time, as twisted.web writes it.
        """
        site = GatewaySite(Hello(), reactor=MemoryReactorClock())
        before = int(time.time())
        _, headers, _ = answer(site, b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        after = int(time.time())
        [date] = headers[b"date"]
        self.assertIn(date, [datetimeToString(t) for t in range(before, after + 1)])

    def test_no_server_header(self) -> None:
        """
        Nothing tells clients which software or version answers.
        """
        site = GatewaySite(Hello(), reactor=MemoryReactorClock())
        status, headers, body = answer(site, b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertNotIn(b"server", headers)
        self.assertEqual(body, BODY)
        for request in (b"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n", b"GET /x HTTP/1.0\r\n\r\n"):
            _, headers, _ = answer(GatewaySite(Broken(), reactor=MemoryReactorClock()), request)
            self.assertNotIn(b"server", headers)
        self.flushLoggedErrors(RuntimeError)

    def test_encoding_resources(self) -> None:
        """
        A resource that encodes its answers (twisted.web's gzip wrapper) still does.
        """
        site = GatewaySite(
            EncodingResourceWrapper(Hello(), [GzipEncoderFactory()]), reactor=MemoryReactorClock()
        )
        get = b"GET / HTTP/1.1\r\nHost: gw\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        _, headers, body = answer(site, get)
        self.assertEqual(headers[b"content-encoding"], [b"gzip"])
        chunks = []
        while body:
            size, _, rest = body.partition(b"\r\n")
            length = int(size, 16)
            chunks.append(rest[:length])
            body = rest[length + 2 :]
        self.assertEqual(gzip.decompress(b"".join(chunks)), BODY)

    def test_star(self) -> None:
        """
        C{OPTIONS *} is answered at once with 200, anything else with C{*} with 405.
        """
        site = GatewaySite(Hello(), reactor=MemoryReactorClock())
        status, headers, _ = answer(site, b"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertEqual(headers[b"content-length"], [b"0"])
        status, headers, _ = answer(site, b"GET * HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(status, b"HTTP/1.1 405 Method Not Allowed")
        self.assertEqual(headers[b"allow"], [b"OPTIONS"])

    def test_error_while_looking_up(self) -> None:
        """
        A resource that fails while finding the child gets a 500, and the error is logged.
        """
        site = GatewaySite(Broken(), reactor=MemoryReactorClock())
        status, _, body = answer(site, b"GET /child HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(status, b"HTTP/1.1 500 Internal Server Error")
        self.assertNotIn(b"no child for you", body)
        [error] = self.flushLoggedErrors(RuntimeError)
        self.assertEqual(str(error.value), "no child for you")
