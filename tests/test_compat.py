"""
The assumptions L{twisted_lambdagw._compat} makes about other packages'
internals, one test each: an upgrade that breaks one fails here, by name.
"""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import prometheus_client
import twisted.web.client
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import tcp
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel, Request
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from twisted_lambdagw import _compat
from twisted_lambdagw._compat import redis_pool_connections, redis_pool_retry_delays
from twisted_lambdagw.invokers.aws import sigv4
from twisted_lambdagw.policies.limits.config import StoreConfig
from twisted_lambdagw.policies.limits.redis import connect
from twisted_lambdagw.server.site import GatewayChannel, GatewaySite

from .redis_fixtures import RedisServer


class HTTPChannelTests(SynchronousTestCase):
    """
    What GatewayChannel uses of twisted.web's HTTPChannel.
    """

    def test_channel_state(self) -> None:
        channel = GatewayChannel()
        transport = StringTransport()
        channel.makeConnection(transport)
        for name in _compat.HTTP_CHANNEL_STATE:
            self.assertTrue(hasattr(channel, name), name)
        channel_state: Any = channel
        self.assertIs(channel_state._networkProducer, transport)
        self.assertFalse(channel_state._handlingRequest)
        self.assertFalse(channel_state._waitingForTransport)
        self.assertIsNone(channel_state._requestProducer)
        channel_state._send100Continue()
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")

    def test_generic_protocol(self) -> None:
        site = GatewaySite(Resource())
        protocol = site.protocol()
        self.assertIsInstance(protocol, _compat.GenericHTTPChannelProtocol)
        self.assertIsInstance(protocol._channel, GatewayChannel)


class StreamedBodyTests(SynchronousTestCase):
    """
    What the local Runtime API reads of a plain HTTPChannel while a chunked
    body arrives: the target, the decoder, the decoder's trailers.
    """

    def test_target_decoder_and_trailers(self) -> None:
        seen: dict[str, object] = {}

        class Watching(Request):
            def gotLength(self, length: int | None) -> None:
                seen["path"] = _compat.channel_path(self.channel)
                seen["decoder"] = _compat.transfer_decoder(self.channel)
                super().gotLength(length)

            def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
                seen["trailers"] = [bytes(line) for line in _compat.trailer_lines(seen["decoder"])]
                self.finish()

        channel = HTTPChannel()
        channel.requestFactory = Watching
        channel.makeConnection(StringTransport())
        channel.dataReceived(
            b"POST /runtime/x?q=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nLambda-Runtime-Function-Error-Type: Oops\r\n\r\n"
        )
        self.assertEqual(seen["path"], b"/runtime/x?q=1")
        self.assertIsNotNone(seen["decoder"])
        self.assertEqual(seen["trailers"], [b"Lambda-Runtime-Function-Error-Type: Oops"])

    def test_no_decoder_no_trailers(self) -> None:
        self.assertEqual(_compat.trailer_lines(None), ())
        self.assertIsNone(_compat.channel_path(object()))


class ClientTests(SynchronousTestCase):
    def test_request_not_sent(self) -> None:
        """
        The exception is the one twisted.web's client raises for a request
        that never left.
        """
        self.assertIs(_compat.RequestNotSent, vars(twisted.web.client)["RequestNotSent"])
        self.assertTrue(issubclass(_compat.RequestNotSent, Exception))


class EndpointServiceTests(SynchronousTestCase):
    def test_raise_synchronously(self) -> None:
        """
        A port that cannot be bound fails the service's start.
        """

        class Refusing:
            def listen(self, factory: object) -> Deferred[object]:
                return fail(CannotListenError("127.0.0.1", 1, OSError("taken")))

        service = StreamServerEndpointService(Refusing(), Factory.forProtocol(Protocol))
        _compat.raise_synchronously(service)
        self.assertRaises(CannotListenError, service.privilegedStartService)

    def test_without_it_the_error_is_logged(self) -> None:
        """
        The default the switch changes: the error is logged, the start goes on.
        """

        class Refusing:
            def listen(self, factory: object) -> Deferred[object]:
                return fail(CannotListenError("127.0.0.1", 1, OSError("taken")))

        StreamServerEndpointService(Refusing(), Factory.forProtocol(Protocol)).startService()
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)


class SigV4Tests(SynchronousTestCase):
    def test_timed_signer(self) -> None:
        """
        The signer signs at the time it is given, as the gateway's own
        signer (L{sigv4.sign}) does, through botocore's private steps.
        """
        self.assertTrue(callable(getattr(SigV4Auth, "_modify_request_before_signing", None)))
        self.assertTrue(callable(getattr(SigV4Auth, "_inject_signature_to_request", None)))
        credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)
        url = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations"
        when = 1_700_000_000.0
        request = AWSRequest(
            method="POST", url=url, data=b"{}", headers={"Content-Type": "application/json"}
        )
        _compat.TimedSigV4Auth(credentials, "us-east-1", when).add_auth(request)
        self.assertEqual(request.headers["X-Amz-Date"], "20231114T221320Z")
        fast = sigv4.sign(
            credentials, "us-east-1", url, b"{}", {"Content-Type": "application/json"}, when
        )
        assert fast is not None
        self.assertEqual(request.headers["Authorization"], fast["Authorization"])


class PrometheusTests(SynchronousTestCase):
    def test_created_switch(self) -> None:
        """
        The private switch follows prometheus-client's public functions.
        """
        self.addCleanup(prometheus_client.enable_created_metrics)
        self.assertTrue(_compat.prometheus_uses_created())
        prometheus_client.disable_created_metrics()
        self.assertFalse(_compat.prometheus_uses_created())
        prometheus_client.enable_created_metrics()
        self.assertTrue(_compat.prometheus_uses_created())


class HashTests(SynchronousTestCase):
    def test_hash_objects_copy(self) -> None:
        """
        What sigv4 does with the objects C{HashObject} names: copy, update, digest.
        """
        keyed = hashlib.sha256(b"k")
        copy = keyed.copy()
        copy.update(b"m")
        self.assertEqual(copy.digest(), hashlib.sha256(b"km").digest())


class EPollReactorTests(SynchronousTestCase):
    def test_state(self) -> None:
        """
        Twisted's epoll reactor keeps what L{_compat.epoll_dispatch} reads:
        its poller, its selectables by descriptor, its dispatch.
        """
        from twisted.internet.epollreactor import EPollReactor

        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        for name in _compat.EPOLL_REACTOR_STATE:
            self.assertTrue(hasattr(reactor, name), name)
        self.assertTrue(callable(reactor._poller.poll))
        self.assertIsInstance(reactor._selectables, dict)
        self.assertTrue(callable(reactor._doReadOrWrite))


class HeadersTests(SynchronousTestCase):
    def test_raw_mapping(self) -> None:
        """
        Headers keeps its fields in a dict by capitalised name, which
        getRawHeaders reads: what net.headers reads and fills directly.
        """
        self.assertTrue(_compat.raw_mapping_usable())
        headers = Headers({b"content-type": [b"a/b"]})
        self.assertEqual(_compat.raw_mapping(headers), {b"Content-Type": [b"a/b"]})
        _compat.set_raw_mapping(headers, {b"X-Amz-Date": [b"1"], b"Content-Type": [b"c/d"]})
        self.assertEqual(headers.getRawHeaders(b"x-amz-date"), [b"1"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"c/d"])
        self.assertEqual(
            sorted(headers.getAllRawHeaders()),
            [(b"Content-Type", [b"c/d"]), (b"X-Amz-Date", [b"1"])],
        )


class TCPTransportTests(SynchronousTestCase):
    def test_idle_socket(self) -> None:
        """
        Twisted's TCP transport keeps the state L{_compat.idle_tcp_socket}
        reads: its socket while nothing is queued, none once a write waits
        for the reactor or the transport is closing.
        """
        for name in _compat.TCP_TRANSPORT_STATE:
            self.assertTrue(hasattr(tcp.Connection, name), name)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        transport = tcp.Connection(ours, Protocol(), MemoryReactor())
        transport.connected = True
        self.assertIs(_compat.idle_tcp_socket(transport), ours)
        transport.write(b"queued")
        self.assertIsNone(_compat.idle_tcp_socket(transport))
        transport.doWrite()
        self.assertEqual(theirs.recv(100), b"queued")
        self.assertIs(_compat.idle_tcp_socket(transport), ours)
        transport.loseConnection()
        self.assertIsNone(_compat.idle_tcp_socket(transport))
        self.assertIsNone(_compat.idle_tcp_socket(StringTransport()))


def real_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class TxRedisPoolTests(TestCase):
    """
    txredisapi's pool: C{handler._factory}, its reconnection delays and its
    list of connections.
    """

    timeout = 30

    def test_retry_delays(self) -> None:
        """
        C{retryDelay} (the pool's reconnection policy) reads C{initialDelay}
        and C{maxDelay} at every attempt, so setting them bounds the wait.
        """
        import txredisapi  # type: ignore[import-untyped]

        factory = txredisapi.RedisFactory(None, 0, 1, isLazy=True)
        handler = factory.handler
        self.assertIs(handler._factory, factory)
        factory.jitter = 0
        self.assertEqual(factory.retryDelay(10), factory.maxDelay)
        self.assertGreater(factory.retryDelay(10), 1.0)
        redis_pool_retry_delays(handler, initial=0.1, maximum=1.0)
        self.assertEqual(factory.retryDelay(1), 0.1)
        self.assertEqual(factory.retryDelay(10), 1.0)

    async def test_pool_connections(self) -> None:
        """
        C{_factory.pool} is one list for the pool's life: a connection is in
        it once ready (C{connected} true, C{execute_command} answering) and
        leaves it once lost.
        """
        redis = RedisServer(self)
        redis.start()
        reactor = real_reactor()
        config = StoreConfig(kind="redis", url=redis.url, host="127.0.0.1", port=redis.port)
        client = connect(config, 1.0, real_reactor(), poolsize=2)
        self.addCleanup(client.disconnect)
        connections = redis_pool_connections(client)
        for _ in range(200):
            if len(connections) == 2:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(len(connections), 2)
        self.assertTrue(all(c.connected for c in connections))
        self.assertEqual(await connections[0].execute_command(b"PING"), "PONG")
        redis.kill()
        for _ in range(200):
            if not connections:
                break
            await deferLater(reactor, 0.01)
        self.assertIs(redis_pool_connections(client), connections)
        self.assertEqual(connections, [])

    async def test_pool_keeps_trying_after_a_failed_handshake(self) -> None:
        """
        A new connection's C{AUTH} fails (the server wants another password):
        txredisapi would stop the whole pool for good and leave an unhandled
        failure; with C{redis_pool_keeps_trying} (from C{connect}) the pool
        keeps reconnecting and is up as soon as the server takes its
        password, and nothing is left unhandled (trial fails the test if so).
        """
        redis = RedisServer(self)
        redis.start()
        self.assertEqual(redis.command("CONFIG", "SET", "requirepass", "other"), b"+OK")
        reactor = real_reactor()
        config = StoreConfig(
            kind="redis", url=redis.url, host="127.0.0.1", port=redis.port, password="right"
        )
        client = connect(config, 1.0, reactor, poolsize=2, retry_max=0.1)
        self.addCleanup(client.disconnect)
        connections = redis_pool_connections(client)
        await deferLater(reactor, 0.5)
        self.assertEqual(connections, [])
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
            s.sendall(
                b"*2\r\n$4\r\nAUTH\r\n$5\r\nother\r\n"
                b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$11\r\nrequirepass\r\n$5\r\nright\r\n"
            )
            reply = b""
            while reply.count(b"\r\n") < 2:
                reply += s.recv(100)
        self.assertEqual(reply, b"+OK\r\n+OK\r\n")
        for _ in range(300):
            if len(connections) == 2:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(len(connections), 2)
        self.assertEqual(await connections[0].execute_command(b"PING"), "PONG")
