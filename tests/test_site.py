"""
The gateway's Site and channel: the header deadline, the idle timeout,
keep-alive and pipelining, on a memory reactor with a clock.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel

from twisted_lambdagw.core.config import GatewayConfig
from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.server.request import GatewayRequest
from twisted_lambdagw.server.site import GatewayChannel, GatewaySite

from .gateway_fixtures import config_from
from .site_fixtures import STATUS_LINE, SiteUnderTest

GET = b"GET /lambda/fn HTTP/1.1\r\nHost: gw\r\n\r\n"


class TimeoutTests(SynchronousTestCase):
    """
    Header deadline per request, idle timeout between requests.
    """

    def setUp(self) -> None:
        self.gw = SiteUnderTest(header_timeout=10, idle_timeout=60)
        self.addCleanup(self.gw.stop)
        self.clock = self.gw.reactor

    def test_silent_connection_hits_idle_timeout(self) -> None:
        """
        A connection that never sends a byte is closed after the idle timeout.
        """
        connection = self.gw.connect()
        self.clock.advance(59)
        self.assertFalse(connection.closing)
        self.clock.advance(1)
        self.assertTrue(connection.closing)

    def test_header_deadline_runs_from_first_byte(self) -> None:
        """
        After the first byte, the head must be complete within header_timeout,
        even though bytes keep arriving: else 408, JSON, and the connection closes.
        """
        connection = self.gw.connect()
        self.clock.advance(30)
        connection.send(b"G")
        for byte in b"ET /lambda/fn HTTP/1.1\r\nHost: gw\r\n":
            self.clock.advance(0.25)
            connection.send(bytes([byte]))
            if self.clock.seconds() >= 39.75:
                break
        self.assertFalse(connection.closing)
        self.assertEqual(connection.received, b"")
        self.clock.advance(40 - self.clock.seconds())
        self.assertTrue(connection.closing)
        self.assertEqual(connection.statuses(), [408])
        document = connection.last_json()
        self.assertEqual(document["error"], "request headers not received in time")
        self.assertIn(b"Connection: close", connection.received)
        self.assertEqual(self.gw.invoker.calls, [])

    def test_client_that_does_not_read_is_aborted(self) -> None:
        """
        A timed-out client whose connection does not close is cut after abortTimeout.
        """
        connection = self.gw.connect()
        connection.send(b"GET / HTTP/1.1\r\n")
        self.clock.advance(10)
        self.assertTrue(connection.closing)
        self.assertFalse(connection.aborted)
        self.clock.advance(GatewayChannel.abortTimeout)
        self.assertTrue(connection.aborted)

    def test_keep_alive_waits_for_idle_timeout_then_new_deadline(self) -> None:
        """
        Between requests only the idle timeout runs; the next request's first byte
        starts a new header deadline.
        """
        connection = self.gw.connect()
        connection.send(GET)
        self.assertEqual(connection.statuses(), [200])
        self.clock.advance(50)
        self.assertFalse(connection.closing)
        connection.send(b"GET /lambda/fn HTTP/1.1\r\n")
        self.clock.advance(9)
        connection.send(b"Host: gw\r\n\r\n")
        self.assertEqual(connection.statuses(), [200, 200])
        self.clock.advance(5)
        self.assertFalse(connection.closing)
        connection.send(b"GET /lambda/fn HTTP/1.1\r\n")
        self.clock.advance(10)
        self.assertEqual(connection.statuses(), [200, 200, 408])
        self.assertTrue(connection.closing)

    def test_slow_function_is_not_a_header_timeout(self) -> None:
        """
        Time spent waiting for the function does not count against the header deadline.
        """
        pending: Deferred[object] = Deferred()
        gw = SiteUnderTest({"slow": lambda event, context: pending}, header_timeout=10)
        self.addCleanup(gw.stop)
        connection = gw.connect()
        connection.send(b"GET /lambda/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        gw.reactor.advance(25)
        self.assertFalse(connection.closing)
        pending.callback({"type": "HTTPJSON-REP", "body": "late"})
        self.assertEqual(connection.statuses(), [200])

    def test_pipelined_requests(self) -> None:
        """
        Pipelined requests are all answered in order; a trailing partial one
        gets its own deadline.
        """
        connection = self.gw.connect()
        connection.send(GET + GET + b"GET /lambda/fn HTTP/1.1\r\nHo")
        self.assertEqual(connection.statuses(), [200, 200])
        self.clock.advance(9.5)
        self.assertFalse(connection.closing)
        self.clock.advance(0.5)
        self.assertEqual(connection.statuses(), [200, 200, 408])


class CountingClock(MemoryReactorClock):
    """
    A memory reactor that counts the timed calls connections make on it.
    """

    made = 0

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        if isinstance(getattr(callable, "__self__", None), GatewayChannel):
            self.made += 1
        return super().callLater(delay, callable, *args, **kw)


class TimerChurnTests(SynchronousTestCase):
    """
    Keep-alive requests do not make and cancel timed calls one after another.
    """

    def test_requests_reuse_the_timer(self) -> None:
        """
        A hundred requests on one connection, a millisecond apart, make a few
        timed calls for the connection's deadlines in all, not several each.
        """
        clock = CountingClock()
        gw = SiteUnderTest(reactor=clock)
        self.addCleanup(gw.stop)
        connection = gw.connect()
        made = clock.made
        for _ in range(100):
            connection.send(GET)
            clock.advance(0.001)
        self.assertEqual(connection.statuses(), [200] * 100)
        self.assertLessEqual(clock.made - made, 3)

    def test_deadlines_still_exact(self) -> None:
        """
        After many requests the idle timeout still runs from the last one, to the tick.
        """
        gw = SiteUnderTest(reactor=CountingClock(), idle_timeout=60)
        self.addCleanup(gw.stop)
        connection = gw.connect()
        for _ in range(30):
            connection.send(GET)
            gw.reactor.advance(1)
        gw.reactor.advance(58.999)
        self.assertFalse(connection.closing)
        gw.reactor.advance(0.001)
        self.assertTrue(connection.closing)


class SiteAssemblyTests(SynchronousTestCase):
    """
    The Site a gateway builds carries the configured limits.
    """

    def test_gateway_site_uses_config(self) -> None:
        """
        header_timeout, idle_timeout and max_body_size come from [gateway].
        """
        config = config_from(
            "[gateway]\nheader_timeout = 3s\nidle_timeout = 2m\nmax_body_size = 1KB\n"
            "[aws]\nregion = us-east-1\n[route:/lambda/]\n"
        )
        self.assertEqual((config.gateway.header_timeout, config.gateway.idle_timeout), (3.0, 120.0))
        from twisted.internet.task import Clock

        site = Gateway(config, Clock(), client=object()).site()
        self.assertIsInstance(site, GatewaySite)
        self.assertEqual(site.header_timeout, 3.0)
        self.assertEqual(site.timeOut, 120.0)
        factory: Any = site.requestFactory
        self.assertTrue(issubclass(factory, GatewayRequest))
        self.assertEqual(factory.max_body_size, 1024)
        self.assertFalse(site.displayTracebacks)

    def test_defaults(self) -> None:
        """
        By default the header deadline is 10 seconds and the idle timeout 60.
        """
        self.assertEqual(GatewayConfig().header_timeout, 10.0)
        self.assertEqual(GatewayConfig().idle_timeout, 60.0)


class AccessLineTests(SynchronousTestCase):
    """
    twisted.web's combined-format access line per request is off unless asked for.
    """

    def served_with_log_file(self, twisted_access_log: bool) -> str:
        gw = SiteUnderTest()
        self.addCleanup(gw.stop)
        log_file = io.StringIO()
        gw.site.logFile = log_file
        gw.site.twisted_access_log = twisted_access_log
        connection = gw.connect()
        connection.send(GET)
        self.assertEqual(connection.statuses(), [200])
        return log_file.getvalue()

    def test_no_line_by_default(self) -> None:
        """
        A served request writes nothing to twisted.web's access log file.
        """
        self.assertEqual(self.served_with_log_file(False), "")

    def test_line_when_asked(self) -> None:
        """
        With twisted_access_log set, twisted.web writes its usual line.
        """
        self.assertIn('"GET /lambda/fn HTTP/1.1" 200', self.served_with_log_file(True))


class FormBodyTests(SynchronousTestCase):
    """
    Form bodies go to the function as they came: twisted.web does not parse them.
    """

    def sent_body(self, content_type: bytes, body: bytes) -> tuple[list[int], bytes]:
        gw = SiteUnderTest()
        self.addCleanup(gw.stop)
        connection = gw.connect()
        connection.send(
            b"POST /lambda/fn HTTP/1.1\r\nHost: gw\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: %d\r\n\r\n" % (len(body),) + body
        )  # fmt: skip
        payloads = [call.payload for call in gw.invoker.calls]
        return connection.statuses(), b"".join(payloads)

    def test_malformed_multipart(self) -> None:
        """
        A multipart body twisted.web could not parse reaches the function (no 400).
        """
        statuses, payload = self.sent_body(b"multipart/form-data; boundary=x", b"--y\r\nnot it")
        self.assertEqual(statuses, [200])
        self.assertIn(b'"body":"--y\\r\\nnot it"', payload)

    def test_urlencoded(self) -> None:
        """
        A urlencoded body reaches the function unchanged.
        """
        statuses, payload = self.sent_body(b"application/x-www-form-urlencoded", b"a=1&b=%20")
        self.assertEqual(statuses, [200])
        self.assertIn(b'"body":"a=1&b=%20"', payload)


HOST = IPv4Address("TCP", "127.0.0.1", 8080)
PEER = IPv4Address("TCP", "192.0.2.7", 50000)


class AddressTransport(StringTransport):
    """
    A transport that counts how often it is asked for its addresses.
    """

    def __init__(
        self,
        host: IPv4Address = HOST,
        peer: IPv4Address = PEER,
    ) -> None:
        super().__init__(hostAddress=host, peerAddress=peer)
        self.asked: list[str] = []

    def getHost(self) -> Any:
        self.asked.append("host")
        return super().getHost()

    def getPeer(self) -> Any:
        self.asked.append("peer")
        return super().getPeer()


class AddressTests(SynchronousTestCase):
    """
    The channel asks its transport for each address once, not once per request.
    """

    def test_asked_once_per_connection(self) -> None:
        """
        Every request on a connection gets the transport's addresses (the
        function sees them as X-Forwarded-For and X-Forwarded-Port); the
        transport is asked once for each.
        """
        seen: list[Any] = []

        def record(event: Any, context: Any) -> Any:
            headers = event["meta"]["headers"]
            seen.append((headers["x-forwarded-for"], headers["x-forwarded-port"]))
            return {"type": "HTTPJSON-REP", "body": "ok"}

        gw = SiteUnderTest({"fn": record})
        self.addCleanup(gw.stop)
        protocol: Any = gw.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        transport = AddressTransport()
        protocol.makeConnection(transport)
        for _ in range(3):
            protocol.dataReceived(GET)
        self.assertEqual(STATUS_LINE.findall(transport.value()), [b"200"] * 3)
        self.assertEqual(seen, [(["192.0.2.7"], ["8080"])] * 3)
        self.assertEqual(sorted(transport.asked), ["host", "peer"])

    def test_asked_again_for_a_new_transport(self) -> None:
        """
        A channel given another transport asks that one.
        """
        channel = GatewayChannel()
        first = AddressTransport()
        channel.makeConnection(first)
        self.assertEqual((channel.getHost(), channel.getPeer()), (HOST, PEER))
        channel.getHost()
        channel.getPeer()
        self.assertEqual(sorted(first.asked), ["host", "peer"])
        second = AddressTransport(
            IPv4Address("TCP", "127.0.0.1", 8443), IPv4Address("TCP", "192.0.2.8", 50001)
        )
        channel.transport = second
        self.assertEqual(channel.getHost(), IPv4Address("TCP", "127.0.0.1", 8443))
        self.assertEqual(channel.getPeer(), IPv4Address("TCP", "192.0.2.8", 50001))
        self.assertEqual(sorted(second.asked), ["host", "peer"])
        channel.connectionLost(Failure(ConnectionLost()))


class ClientGoneTests(SynchronousTestCase):
    """
    A client leaving in the middle of a call, on the gateway's own request
    class (which tells the resource without a notifyFinish Deferred).
    """

    def test_call_cancelled_and_recorded(self) -> None:
        """
        The function's call is cancelled, nothing is written, and the
        exchange is recorded as client_gone.
        """
        cancelled: list[object] = []
        pending: Deferred[object] = Deferred(cancelled.append)
        gw = SiteUnderTest({"slow": lambda event, context: pending})
        self.addCleanup(gw.stop)
        records: list[Any] = []
        gw.resource.observers.append(records.append)
        connection = gw.connect()
        connection.send(b"GET /lambda/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(cancelled, [])
        connection.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(cancelled, [pending])
        self.assertEqual(connection.received, b"")
        [record] = records
        self.assertEqual((record.status, record.outcome), (0, "client_gone"))
        self.assertEqual(gw.resource.in_flight, 0)

    def test_finished_request_not_told(self) -> None:
        """
        A connection lost after the response was finished tells no watcher.
        """
        told: list[Failure] = []
        request = GatewayRequest(DummyChannel())
        request.on_connection_lost(told.append)
        request.finished = 1
        request.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(told, [])
        lost = GatewayRequest(DummyChannel())
        lost.on_connection_lost(told.append)
        reason = Failure(ConnectionLost())
        lost.connectionLost(reason)
        lost.connectionLost(reason)
        self.assertEqual(told, [reason])
