"""
A hostile Lambda endpoint answering with a gzip bomb: the gateway answers
502 without inflating it (issue: ``Content-Encoding: gzip, gzip`` over 824
bytes took the process from 61 to 587 MB).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.trial.unittest import TestCase

from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.aws.invoker import AWSInvoker, CredentialSource
from twisted_lambdagw.invokers.aws.upstream import lambda_client, persistent_pool
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.server.site import GatewaySite

from .gateway_fixtures import config_from
from .loopback import RawClient, real_reactor

ZEROS = 400 * 1024 * 1024


def gzip_of(pieces: list[bytes] | bytes, total: int = 0) -> bytes:
    """
    gzip of C{pieces} (or of C{total} zero bytes, made a megabyte at a time).
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    if isinstance(pieces, bytes):
        out = [packer.compress(pieces)]
    else:
        zeros = bytes(1024 * 1024)
        out = [packer.compress(zeros) for _ in range(total // len(zeros))]
    out.append(packer.flush())
    return b"".join(out)


_BOMB: list[bytes] = []


def bomb() -> bytes:
    """
    gzip of gzip of 400 MB of zeros, under a kilobyte; made once, when first asked.
    """
    if not _BOMB:
        _BOMB.append(gzip_of(gzip_of([], ZEROS)))
    return _BOMB[0]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Bomber(Protocol):
    """
    Answers every request on the connection with the bomb, whatever was asked.
    """

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data or b"}" in data:
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip, gzip\r\nContent-Length: %d\r\n\r\n%s"
                % (len(bomb()), bomb())
            )


class GzipBombTests(TestCase):
    async def test_bomb_is_502_and_never_inflated(self) -> None:
        """
        Two bombs in a row: each is a 502 JSON error to the client, and the
        process's resident memory grows by less than 50 MB (inflated once,
        one bomb would be 400 MB).
        """
        self.assertLess(len(bomb()), 2000)
        reactor = real_reactor()
        bomber = reactor.listenTCP(0, Factory.forProtocol(Bomber), interface="127.0.0.1")
        self.addCleanup(bomber.stopListening)
        pool = persistent_pool(reactor, max_per_host=10)
        self.addCleanup(pool.closeCachedConnections)
        invoker = AWSInvoker(
            lambda_client(pool),
            CredentialSource.from_keys("AKIDEXAMPLE", "secret"),
            "us-east-1",
            f"http://127.0.0.1:{bomber.getHost().port}",
            clock=reactor,
        )
        [route] = config_from("[route:/lambda/]\naws_region = us-east-1\n").routes
        resource = GatewayResource([Binding(route, invoker, get_format("httpjson"))], reactor)
        site = GatewaySite(resource, reactor=reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        before = rss_bytes()
        for _ in range(2):
            client = RawClient(
                b"POST /lambda/fn HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
            factory = ClientFactory()
            factory.protocol = lambda: client  # noqa: B023 (used before the loop moves on)
            reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
            answer = await client.done
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 502 "), answer[:300])
            self.assertIn("request_id", json.loads(body))
        self.assertLess(rss_bytes() - before, 50 * 1024 * 1024)
