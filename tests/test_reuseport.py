"""
Listening sockets shared by the gateway's processes: reading addresses out
of endpoints, binding ``SO_REUSEPORT`` groups on loopback, and adopting
inherited sockets on a memory reactor.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from treq.client import HTTPClient
from twisted.internet.error import CannotListenError
from twisted.internet.ssl import Certificate
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.daemon.listen import server_endpoint
from twisted_lambdagw.daemon.reuseport import (
    AdoptedListeners,
    Listener,
    bind_shared,
    check_workers,
    shared_listeners,
)

from .gateway_fixtures import config_from
from .process_fixtures import temp_dir
from .tls_fixtures import make_pki

ROUTES = """
[aws]
region = us-west-2
access_key_id = AKIDEXAMPLEFAKEKEY01
secret_access_key = fake-secret-for-tests-only
endpoint_url = http://127.0.0.1:1

[route:/lambda/]
"""


def gateway_config(*listen: str, workers: int = 2) -> Any:
    lines = "\n         ".join(listen)
    return config_from(f"[gateway]\nlisten = {lines}\nworkers = {workers}\n" + ROUTES)


def loopback(port: int = 0, backlog: int = 50) -> Listener:
    return Listener("tcp", socket.AF_INET, "127.0.0.1", port, backlog)


def close_all(case: SynchronousTestCase, sockets: list[socket.socket]) -> None:
    for sock in sockets:
        case.addCleanup(sock.close)


class SharedListenersTests(SynchronousTestCase):
    """
    Each listen line becomes an address, backlog and TLS setting, or a config error.
    """

    def test_tcp(self) -> None:
        """
        A tcp: line gives its interface, port and backlog, without TLS.
        """
        config = gateway_config("tcp:8080:interface=127.0.0.1:backlog=77")
        [listener] = shared_listeners(config, server_endpoint)
        self.assertEqual(
            (listener.family, listener.interface, listener.port, listener.backlog),
            (socket.AF_INET, "127.0.0.1", 8080, 77),
        )
        self.assertIsNone(listener.tls)
        site = Site(Resource())
        self.assertIs(listener.factory(site), site)

    def test_tcp6(self) -> None:
        """
        A tcp6: line is an IPv6 listener, bound to a resolved IPv6 address.
        """
        config = gateway_config(r"tcp6:8081:interface=\:\:1")
        [listener] = shared_listeners(config, server_endpoint)
        self.assertEqual((listener.family, listener.interface), (socket.AF_INET6, "::1"))
        self.assertEqual(listener.address(8081)[:2], ("::1", 8081))

    def test_ssl(self) -> None:
        """
        An ssl: line keeps its context factory; its connections go through TLS to the site.
        """
        pki = make_pki(str(temp_dir(self)))
        config = gateway_config(pki.endpoint(8443))
        [listener] = shared_listeners(config, server_endpoint)
        self.assertEqual((listener.interface, listener.port), ("127.0.0.1", 8443))
        self.assertIsNotNone(listener.tls)
        site = Site(Resource())
        factory = listener.factory(site)
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory, site)

    def test_lines_in_order(self) -> None:
        """
        Several lines give one listener each, in the config's order.
        """
        config = gateway_config("tcp:8080:interface=127.0.0.1", "tcp:9090")
        listeners = shared_listeners(config, server_endpoint)
        self.assertEqual(
            [(x.interface, x.port) for x in listeners], [("127.0.0.1", 8080), ("", 9090)]
        )

    def test_unix_cannot_be_shared(self) -> None:
        """
        A unix: line with workers > 1 is a config error naming [gateway] workers.
        """
        config = gateway_config("tcp:8080", "unix:/tmp/gw.sock")
        with self.assertRaises(ConfigError) as caught:
            check_workers(config, server_endpoint)
        message = str(caught.exception)
        self.assertTrue(message.startswith("test.ini: [gateway] workers: 2 processes"), message)
        self.assertIn("'unix:/tmp/gw.sock'", message)
        self.assertNotIn("\n", message)

    def test_unix_with_one_worker(self) -> None:
        """
        With workers = 1 nothing is shared, so a unix: line is fine.
        """
        check_workers(gateway_config("unix:/tmp/gw.sock", workers=1), server_endpoint)


class BindSharedTests(SynchronousTestCase):
    """
    A group of sockets on one loopback address, or one clear error.
    """

    def test_group(self) -> None:
        """
        Every socket is listening, non-blocking, with SO_REUSEPORT, on the one port.
        """
        sockets = bind_shared(loopback(), 3)
        close_all(self, sockets)
        self.assertEqual(len(sockets), 3)
        [port] = {sock.getsockname() for sock in sockets}
        self.assertEqual(port[0], "127.0.0.1")
        self.assertNotEqual(port[1], 0)
        for sock in sockets:
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), 1)
            self.assertFalse(sock.getblocking())

    def test_connections_spread(self) -> None:
        """
        The kernel hands new connections to every socket of the group.
        """
        sockets = bind_shared(loopback(backlog=128), 2)
        close_all(self, sockets)
        address = sockets[0].getsockname()
        clients = [socket.create_connection(address) for _ in range(64)]
        close_all(self, clients)
        accepted = []
        for sock in sockets:
            count = 0
            while True:
                try:
                    connection, _ = sock.accept()
                except BlockingIOError:
                    break
                connection.close()
                count += 1
            accepted.append(count)
        self.assertEqual(sum(accepted), 64)
        self.assertNotIn(0, accepted)

    def test_port_taken(self) -> None:
        """
        An address something listens on: CannotListenError as Twisted words it, nothing left open.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = len(os.listdir("/proc/self/fd"))
        with self.assertRaises(CannotListenError) as caught:
            bind_shared(loopback(port), 2)
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}", str(caught.exception))
        self.assertIn("Address already in use", str(caught.exception))

    def test_other_group_not_joined(self) -> None:
        """
        Another SO_REUSEPORT group on the address (a second gateway) is a taken port.
        """
        first = bind_shared(loopback(), 2)
        close_all(self, first)
        port = first[0].getsockname()[1]
        with self.assertRaises(CannotListenError):
            bind_shared(loopback(port), 2)


class AdoptedListenersTests(SynchronousTestCase):
    """
    A worker serves the sockets it inherited, and only through its ports.
    """

    def test_adopt_and_stop(self) -> None:
        """
        Each descriptor is adopted with its listener's factory, then closed; stop stops the ports.
        """
        group = bind_shared(loopback(), 1)
        close_all(self, group)
        inherited = os.dup(group[0].fileno())
        reactor = MemoryReactor()
        site = Site(Resource())
        service = AdoptedListeners([loopback()], [(inherited, socket.AF_INET)], site, reactor)
        service.startService()
        self.assertEqual(reactor.adoptedPorts, [(inherited, socket.AF_INET, site)])
        self.assertRaises(OSError, os.fstat, inherited)
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(service.ports, [])

    def test_count_must_match(self) -> None:
        """
        A socket count that differs from the listeners' is refused.
        """
        with self.assertRaises(ValueError):
            AdoptedListeners(
                [loopback(), loopback()], [(3, socket.AF_INET)], Site(Resource()), MemoryReactor()
            )


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello over " + (b"TLS" if request.isSecure() else b"plain HTTP")


class AdoptedTLSTests(TestCase):
    """
    A shared ssl: socket, adopted on the real reactor, speaks TLS with the endpoint's certificate.
    """

    async def test_https_round_trip(self) -> None:
        """
        An HTTPS client that trusts only the configured certificate gets the site's answer.
        """
        from twisted.internet import reactor as global_reactor

        reactor: Any = global_reactor
        pki = make_pki(str(temp_dir(self)))
        config = gateway_config(pki.endpoint())
        [listener] = shared_listeners(config, server_endpoint)
        [sock] = bind_shared(listener, 1)
        port = sock.getsockname()[1]
        service = AdoptedListeners(
            [listener], [(os.dup(sock.fileno()), socket.AF_INET)], Site(Hello()), reactor
        )
        sock.close()
        service.startService()
        self.addCleanup(service.stopService)

        pool = HTTPConnectionPool(reactor, persistent=False)
        trust = Certificate.loadPEM(pki.ca_pem)
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool)
        response = await HTTPClient(agent).get(f"https://localhost:{port}/")
        self.assertEqual(await response.content(), b"hello over TLS")
