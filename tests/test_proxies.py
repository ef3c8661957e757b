"""
trusted_proxies: which forwarded headers are believed, and the client they
name, both as a pure function and through the real gateway.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.proxies import Origin, TrustedProxies
from twisted_lambdagw.testing import FakeContext

from .gateway_fixtures import FakeAWSGateway, config_from

ROUTE = "[aws]\nregion = us-east-1\n[route:/lambda/]\n"


def proxies(*entries: str) -> TrustedProxies:
    return TrustedProxies([e if e == "unix" else ipaddress.ip_network(e) for e in entries])


class OriginTests(SynchronousTestCase):
    """
    The client behind a connection, from its peer and forwarded headers.
    """

    def test_untrusted_peer_headers_ignored(self) -> None:
        """
        Without trusted proxies, or from another peer, the peer is the client.
        """
        for trusted in (proxies(), proxies("10.0.0.0/8")):
            self.assertEqual(
                trusted.origin("203.0.113.9", "http", 8080, ["1.2.3.4"], ["https"], ["443"]),
                Origin("203.0.113.9", "http", 8080),
            )

    def test_right_most_untrusted_hop(self) -> None:
        """
        Trusted hops are skipped from the right; the first other address is the
        client, and what the client wrote to its left is ignored.
        """
        trusted = proxies("10.0.0.0/8", "192.0.2.1/32")
        origin = trusted.origin(
            "10.0.0.2",
            "http",
            8080,
            ["6.6.6.6, 198.51.100.7", "192.0.2.1 , 10.1.2.3"],
            ["http, https"],
            ["443"],
        )
        self.assertEqual(origin, Origin("198.51.100.7", "https", 443))

    def test_every_hop_trusted(self) -> None:
        """
        When every hop is trusted, the left-most is the client.
        """
        origin = proxies("10.0.0.0/8").origin("10.0.0.2", "http", 80, ["10.9.9.9, 10.0.0.1"])
        self.assertEqual(origin.remote, "10.9.9.9")

    def test_garbage_hop_ends_the_walk(self) -> None:
        """
        A hop that is not an IP stops the walk at the last trusted address.
        """
        trusted = proxies("10.0.0.0/8")
        origin = trusted.origin("10.0.0.2", "http", 80, ["1.2.3.4, unknown, 10.0.0.7"])
        self.assertEqual(origin.remote, "10.0.0.7")
        origin = trusted.origin("10.0.0.2", "http", 80, ["1.2.3.4, <script>"])
        self.assertEqual(origin.remote, "10.0.0.2")

    def test_no_forwarded_for(self) -> None:
        """
        A trusted peer that sent no X-Forwarded-For is the client itself.
        """
        self.assertEqual(
            proxies("10.0.0.0/8").origin("10.0.0.2", "https", 8443),
            Origin("10.0.0.2", "https", 8443),
        )

    def test_bad_proto_and_port_ignored(self) -> None:
        """
        Only http/https and ports 1-65535 are taken from a trusted proxy.
        """
        trusted = proxies("10.0.0.0/8")
        origin = trusted.origin("10.0.0.2", "http", 8080, [], ["javascript"], ["0"])
        self.assertEqual(origin, Origin("10.0.0.2", "http", 8080))
        origin = trusted.origin("10.0.0.2", "http", 8080, [], ["HTTPS"], ["99999"])
        self.assertEqual(origin, Origin("10.0.0.2", "https", 8080))

    def test_ipv6_and_mapped_addresses(self) -> None:
        """
        IPv6 hops (bracketed or not) work, and a dual-stack socket's
        ::ffff:10.0.0.2 peer matches an IPv4 network.
        """
        trusted = proxies("10.0.0.0/8", "fd00::/8")
        origin = trusted.origin("::ffff:10.0.0.2", "http", 80, ["2001:db8::1, [fd00::5]"])
        self.assertEqual(origin.remote, "2001:db8::1")

    def test_unix_socket_peer(self) -> None:
        """
        ``unix`` trusts connections on a Unix socket (peer None), and only those.
        """
        self.assertEqual(proxies("unix").origin(None, "http", 0, ["1.2.3.4"]).remote, "1.2.3.4")
        self.assertEqual(proxies("10.0.0.0/8").origin(None, "http", 0, ["1.2.3.4"]).remote, "")


class TrustedProxiesConfigTests(SynchronousTestCase):
    """
    The [gateway] trusted_proxies key.
    """

    def test_parsed(self) -> None:
        """
        Addresses, networks and ``unix`` are read; the default is none.
        """
        config = config_from(f"[gateway]\ntrusted_proxies = 10.0.0.0/8 ::1 unix\n{ROUTE}")
        self.assertEqual(
            config.gateway.trusted_proxies,
            (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"), "unix"),
        )
        self.assertEqual(config_from(ROUTE).gateway.trusted_proxies, ())

    def test_invalid(self) -> None:
        """
        Names and networks with host bits set are config errors naming the key.
        """
        for value in ["proxy.example", "10.0.0.1/8", "300.0.0.1"]:
            with self.assertRaises(ConfigError) as raised:
                config_from(f"[gateway]\ntrusted_proxies = {value}\n{ROUTE}")
            self.assertIn(
                "[gateway] trusted_proxies: not an IP address or network", str(raised.exception)
            )


class ThroughGatewayTests(SynchronousTestCase):
    """
    What the function sees, behind a trusted proxy and without one.
    """

    def serve(self, gateway_section: str, headers: dict[str, str]) -> Any:
        events: list[Any] = []

        def echo(event: Any, context: FakeContext) -> Any:
            events.append(event)
            return {"type": "HTTPJSON-REP", "meta": {"status": 200}}

        gw = FakeAWSGateway(
            gateway_section + "[route:/lambda/]\nheader_upstream = X-Real-IP {remote}\n",
            {"fn": echo},
        )
        records: list[Any] = []
        gw.gateway.resource.observers.append(records.append)
        d = gw.client.get("http://gw/lambda/fn", headers=headers)
        gw.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        [event] = events
        [record] = records
        return event["meta"]["headers"], record

    FORWARDED = {
        "X-Forwarded-For": "6.6.6.6, 198.51.100.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
    }

    def test_forwarded_headers_from_clients_are_replaced(self) -> None:
        """
        By default a client's X-Forwarded-* are dropped and the connection's used.
        """
        headers, record = self.serve("", self.FORWARDED)
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-real-ip"], ["127.0.0.1"])
        self.assertEqual(record.remote, "127.0.0.1")

    def test_trusted_proxy_names_the_client(self) -> None:
        """
        From a trusted proxy the right-most untrusted hop is the client: in the
        forwarded headers, in {remote} and in the exchange record.
        """
        headers, record = self.serve("[gateway]\ntrusted_proxies = 127.0.0.1\n", self.FORWARDED)
        self.assertEqual(headers["x-forwarded-for"], ["198.51.100.7"])
        self.assertEqual(headers["x-forwarded-proto"], ["https"])
        self.assertEqual(headers["x-forwarded-port"], ["443"])
        self.assertEqual(headers["x-real-ip"], ["198.51.100.7"])
        self.assertEqual(record.remote, "198.51.100.7")
