"""
TLS listeners: ``ssl:`` descriptions built by the gateway with a TLS 1.2
floor, startup errors for bad keys and certificates, and real HTTPS on
loopback, over HTTP/1.1 (treq) and HTTP/2 (h2, chosen by ALPN), with real
certificates made for each test.
"""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from typing import Any

import h2.config
import h2.connection
import h2.events
from OpenSSL import SSL
from treq import content
from treq.client import HTTPClient
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.endpoint_strings import split_description
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.daemon.listen import http2_available, server_endpoint
from twisted_lambdagw.daemon.tap import Options, check_endpoints, makeService
from twisted_lambdagw.invokers.aws.upstream import lambda_client, persistent_pool
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.server.site import GatewaySite
from twisted_lambdagw.testing import FakeContext, InProcessInvoker

from .gateway_fixtures import config_from
from .loopback import real_reactor
from .scratch import temp_dir, temp_path
from .tls_fixtures import CertificateFiles, escape, make_pki


class SplitDescriptionTests(SynchronousTestCase):
    """
    Endpoint descriptions split as Twisted splits them.
    """

    def test_arguments_and_escapes(self) -> None:
        """
        ``:`` separates, the first ``=`` assigns, a backslash escapes.
        """
        self.assertEqual(
            split_description(r"ssl:8443:privateKey=C\:\\k=1.pem:certKey=a\=b"),
            (["ssl", "8443"], {"privateKey": "C:\\k=1.pem", "certKey": "a=b"}),
        )

    def test_repeated_key(self) -> None:
        """
        A key given twice is an error, not silently the last value.
        """
        self.assertRaises(ValueError, split_description, "ssl:1:certKey=a:certKey=b")


class TLSEndpointTests(SynchronousTestCase):
    """
    ``ssl:`` endpoints are built here, with explicit TLS versions.
    """

    def setUp(self) -> None:
        self.pki = make_pki(temp_dir(self))

    def test_other_kinds_go_to_twisted(self) -> None:
        """
        A ``tcp:`` description is Twisted's own endpoint.
        """
        endpoint = server_endpoint(MemoryReactor(), "tcp:8080:interface=127.0.0.1")
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)

    def listen(self, description: str, **kwargs: Any) -> tuple[Any, ...]:
        reactor = MemoryReactor()
        endpoint = server_endpoint(reactor, description, **kwargs)
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)
        endpoint.listen(Factory())
        [listened] = reactor.sslServers
        return tuple(listened)

    def disabled(self, options: Any) -> int:
        # set_options returns the options in force; adding none changes nothing.
        result: int = options.getContext().set_options(0)
        return result

    def test_tls12_minimum(self) -> None:
        """
        By default TLS 1.0 and 1.1 are switched off and TLS 1.2 and 1.3 are on.
        """
        port, _, options, backlog, interface = self.listen(self.pki.endpoint(8443))
        self.assertEqual((port, backlog, interface), (8443, 50, "127.0.0.1"))
        disabled = self.disabled(options)
        self.assertTrue(disabled & SSL.OP_NO_TLSv1)
        self.assertTrue(disabled & SSL.OP_NO_TLSv1_1)
        self.assertFalse(disabled & SSL.OP_NO_TLSv1_2)
        self.assertFalse(disabled & SSL.OP_NO_TLSv1_3)

    def test_tls13_minimum(self) -> None:
        """
        tls_min_version 1.3 switches TLS 1.2 off as well.
        """
        _, _, options, _, _ = self.listen(self.pki.endpoint(), tls_min_version="1.3")
        disabled = self.disabled(options)
        self.assertTrue(disabled & SSL.OP_NO_TLSv1_2)
        self.assertFalse(disabled & SSL.OP_NO_TLSv1_3)

    def test_key_and_certificate_in_one_file(self) -> None:
        """
        As with Twisted, certKey defaults to privateKey, which may hold both.
        """
        combined = temp_path(self)
        with open(combined, "wb") as out:
            for name in (self.pki.server_key, self.pki.server_cert):
                with open(name, "rb") as f:
                    out.write(f.read())
        self.listen(f"ssl:443:privateKey={escape(combined)}:backlog=7")

    def assertRefused(self, description: str, *expected: str) -> None:
        with self.assertRaises(ValueError) as raised:
            server_endpoint(MemoryReactor(), description)
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        for text in expected:
            self.assertIn(text, message)

    def garbage(self, content: bytes) -> str:
        path: str = temp_path(self)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_bad_files(self) -> None:
        """
        A missing, garbage or mismatched key or certificate is refused, naming the file.
        """
        key, cert = escape(self.pki.server_key), escape(self.pki.server_cert)
        missing = temp_path(self)
        self.assertRefused(
            f"ssl:443:privateKey={escape(missing)}:certKey={cert}",
            f"privateKey {missing!r}: cannot read",
        )
        junk = self.garbage(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
        self.assertRefused(
            f"ssl:443:privateKey={key}:certKey={escape(junk)}",
            f"certKey {junk!r}: no PEM certificate",
        )
        self.assertRefused(
            f"ssl:443:privateKey={escape(junk)}:certKey={cert}",
            f"privateKey {junk!r}: no PEM private key",
        )
        other = make_pki(temp_dir(self))
        self.assertRefused(
            f"ssl:443:privateKey={escape(other.server_key)}:certKey={cert}",
            "do not work together",
        )
        self.assertRefused(
            f"ssl:443:privateKey={key}:certKey={cert}:extraCertChain={escape(junk)}",
            "extraCertChain",
        )

    def test_bad_options(self) -> None:
        """
        sslmethod (which would undo the minimum), unknown options and bad ports are refused.
        """
        key, cert = escape(self.pki.server_key), escape(self.pki.server_cert)
        self.assertRefused(
            f"ssl:443:privateKey={key}:certKey={cert}:sslmethod=TLSv1_METHOD",
            "sslmethod is not supported",
        )
        self.assertRefused(f"ssl:443:privateKey={key}:certKey={cert}:verify=yes", "'verify'")
        self.assertRefused(f"ssl:99999:privateKey={key}:certKey={cert}", "port must be")
        self.assertRefused(f"ssl:https:privateKey={key}:certKey={cert}", "port must be")

    def test_startup_fails_with_one_line(self) -> None:
        """
        A bad certificate in [gateway] listen or --listen ends option parsing with
        one line naming the config file and the endpoint.
        """
        junk = self.garbage(b"garbage, not PEM\n")
        description = f"ssl:8443:privateKey={escape(junk)}:certKey={escape(junk)}"
        config = config_from(
            f"[gateway]\nlisten = {description}\n[route:/l/]\naws_region=us-east-1"
        )
        with self.assertRaises(ConfigError) as raised:
            check_endpoints(config, MemoryReactor())
        self.assertIn("test.ini: [gateway] listen: bad endpoint", str(raised.exception))
        self.assertIn("no PEM", str(raised.exception))

        ini = temp_path(self)
        with open(ini, "w") as f:
            f.write("[route:/l/]\naws_region = us-east-1\n")
        options = Options(MemoryReactor())
        with self.assertRaises(UsageError) as usage:
            options.parseOptions(["--config", ini, "--listen", description])
        self.assertNotIn("\n", str(usage.exception))
        self.assertIn("no PEM", str(usage.exception))


class TapTLSTests(SynchronousTestCase):
    """
    The twistd service listens on ssl: endpoints with the configured TLS floor.
    """

    def start(self, extra: str = "") -> tuple[Any, Any]:
        pki = make_pki(temp_dir(self))
        ini = temp_path(self, "gw.ini")
        with open(ini, "w") as f:
            f.write(
                f"[gateway]\nlisten = {pki.endpoint(8443)}\n{extra}"
                "[route:/l/]\naws_region = us-east-1\n"
                # Keys of its own, so parsing the options looks up no credentials.
                "aws_access = AKIDEXAMPLEFAKEKEY01\naws_secret = fake-secret\n"
            )
        options = Options(MemoryReactor())
        options.parseOptions(["--config", ini])
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [(port, site, context, _, interface)] = reactor.sslServers
        self.assertEqual((port, interface), (8443, "127.0.0.1"))
        return site, context

    def test_ssl_listener(self) -> None:
        """
        The Site is the gateway's, and TLS 1.1 is off by default.
        """
        site, context = self.start()
        self.assertIsInstance(site, GatewaySite)
        self.assertTrue(context.getContext().set_options(0) & SSL.OP_NO_TLSv1_1)
        self.assertFalse(context.getContext().set_options(0) & SSL.OP_NO_TLSv1_2)

    def test_tls13_from_config(self) -> None:
        """
        [gateway] tls_min_version = 1.3 reaches the listener.
        """
        _, context = self.start("tls_min_version = 1.3\n")
        self.assertTrue(context.getContext().set_options(0) & SSL.OP_NO_TLSv1_2)

    def test_lower_minimum_refused(self) -> None:
        """
        tls_min_version accepts only 1.2 and 1.3.
        """
        with self.assertRaises(ConfigError) as raised:
            config_from("[gateway]\ntls_min_version = 1.1\n[route:/l/]\naws_region = us-east-1")
        self.assertIn("[gateway] tls_min_version: must be one of 1.2, 1.3", str(raised.exception))


@implementer(IPolicyForHTTPS)
class TrustTestCA:
    """
    An HTTPS policy for treq's Agent that trusts only the test CA.
    """

    def __init__(self, ca_pem: bytes) -> None:
        self.ca = Certificate.loadPEM(ca_pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(hostname.decode("ascii"), trustRoot=self.ca)


class H2Client(Protocol):
    """
    One HTTP/2 GET over an established TLS connection, with h2's state machine.
    """

    def __init__(self, path: bytes) -> None:
        self.path = path
        self.connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.ended = False
        self.negotiated: bytes | None = None
        self.done: Deferred[H2Client] = Deferred()

    def connectionMade(self) -> None:
        self.connection.initiate_connection()
        self.connection.send_headers(
            1,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", self.path),
            ],
            end_stream=True,
        )
        self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        self.transport.write(self.connection.data_to_send())

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.negotiated = getattr(self.transport, "negotiatedProtocol", None)
        for event in self.connection.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers = dict(event.headers or [])
            elif isinstance(event, h2.events.DataReceived):
                self.body += event.data or b""
                self.connection.acknowledge_received_data(event.flow_controlled_length or 0, 1)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True
                self.connection.close_connection()
                self.flush()
                self.transport.loseConnection()
                return
        self.flush()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(self)


def tls_handshake(port: int, ca_file: str, version: ssl.TLSVersion) -> str:
    """
    A blocking TLS handshake limited to one version; its version or the error.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(ca_file)
        # Old protocol versions need the lowest security level to be offered.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = version
        context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return str(tls.version())
        except (ssl.SSLError, OSError) as e:
            return f"refused: {e}"


def permissive_server(pki: CertificateFiles) -> tuple[int, threading.Thread]:
    """
    A one-connection Python TLS server that accepts TLS 1.1, for control.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


class HTTPSLoopbackTests(TestCase):
    """
    The gateway on a real ``ssl:`` loopback port, with real HTTPS clients.
    """

    def setUp(self) -> None:
        self.reactor = real_reactor()
        directory = temp_dir(self)
        self.pki = make_pki(directory)
        self.events: list[Any] = []

        def echo(event: Any, context: FakeContext) -> Any:
            self.events.append(event)
            return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "secure hello"}

        [route] = config_from("[route:/lambda/]\naws_region = us-east-1\n").routes
        binding = Binding(route, InProcessInvoker({"fn": echo}), get_format(route.format))
        self.site = GatewaySite(GatewayResource([binding], self.reactor), reactor=self.reactor)

    async def start(self, tls_min_version: str = "1.2") -> int:
        endpoint = server_endpoint(
            self.reactor, self.pki.endpoint(), tls_min_version=tls_min_version
        )
        port = await endpoint.listen(self.site)
        self.addCleanup(port.stopListening)
        number: int = getattr(port.getHost(), "port", 0)
        return number

    async def test_http11_with_treq(self) -> None:
        """
        treq, trusting only the test CA, gets the function's reply over HTTPS.
        """
        port = await self.start()
        client = HTTPClient(Agent(self.reactor, contextFactory=TrustTestCA(self.pki.ca_pem)))
        response = await client.get(f"https://localhost:{port}/lambda/fn")
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), b"secure hello")
        [event] = self.events
        self.assertEqual(event["meta"]["headers"]["x-forwarded-proto"], ["https"])
        self.assertEqual(event["meta"]["proto"], "HTTP/1.1")

    async def test_untrusted_certificate_fails(self) -> None:
        """
        A client that trusts the public CAs only does not accept the test certificate.
        """
        from twisted.web._newclient import ResponseNeverReceived

        port = await self.start()
        client = HTTPClient(Agent(self.reactor, contextFactory=BrowserLikePolicyForHTTPS()))
        with self.assertRaises(ResponseNeverReceived):
            await client.get(f"https://localhost:{port}/lambda/fn")
        self.assertEqual(self.events, [])

    async def lambda_client_get(self, policy: IPolicyForHTTPS | None, host: str) -> bytes:
        """
        POST to the route through the gateway's own upstream client.
        """
        port = await self.start()
        pool = persistent_pool(self.reactor, max_per_host=10, tls=policy)
        self.addCleanup(pool.closeCachedConnections)
        client = lambda_client(pool)
        response = await client.post(f"https://{host}:{port}/lambda/fn", data=b"{}")
        self.assertEqual(response.code, 200)
        body: bytes = await content(response)
        return body

    async def test_lambda_client_checks_certificates(self) -> None:
        """
        The upstream client, trusting the test CA, accepts the server's
        certificate for its host name and for its IP address.
        """
        policy = TrustTestCA(self.pki.ca_pem)
        self.assertEqual(await self.lambda_client_get(policy, "localhost"), b"secure hello")
        self.assertEqual(await self.lambda_client_get(policy, "127.0.0.1"), b"secure hello")

    async def test_lambda_client_untrusted_certificate_fails(self) -> None:
        """
        By default the upstream client trusts the public CAs only, as twisted.web's Agent does.
        """
        from twisted.web._newclient import ResponseNeverReceived

        with self.assertRaises(ResponseNeverReceived):
            await self.lambda_client_get(None, "127.0.0.1")
        self.assertEqual(self.events, [])

    async def test_http2_by_alpn(self) -> None:
        """
        A client offering h2 by ALPN gets HTTP/2 and the function's reply.
        """
        if not http2_available():
            raise SkipTest("Twisted's HTTP/2 support (h2, priority) is not installed")
        port = await self.start()
        options = optionsForClientTLS(
            "localhost",
            trustRoot=Certificate.loadPEM(self.pki.ca_pem),
            acceptableProtocols=[b"h2"],
        )
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(self.reactor, "127.0.0.1", port))
        client = H2Client(b"/lambda/fn?x=1")
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.done
        self.assertEqual(client.negotiated, b"h2")
        self.assertTrue(client.ended)
        self.assertEqual(client.headers[b":status"], b"200")
        self.assertEqual(client.body, b"secure hello")
        [event] = self.events
        self.assertEqual(event["meta"]["proto"], "HTTP/2")
        self.assertEqual(event["meta"]["query"], "x=1")

    async def test_old_tls_refused(self) -> None:
        """
        A client that speaks only TLS 1.1 is refused; TLS 1.2 and 1.3 clients are
        served.  The same client completes a TLS 1.1 handshake with a permissive
        server, so the refusal is the gateway's doing.
        """
        control_port, thread = permissive_server(self.pki)
        control = await threads.deferToThread(
            tls_handshake, control_port, self.pki.ca_cert, ssl.TLSVersion.TLSv1_1
        )
        thread.join(10)
        if control != "TLSv1.1":
            raise SkipTest(f"this OpenSSL cannot speak TLS 1.1 at all: {control}")
        port = await self.start()
        results = {}
        for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            results[version.name] = await threads.deferToThread(
                tls_handshake, port, self.pki.ca_cert, version
            )
        self.assertIn("refused", results["TLSv1_1"])
        self.assertEqual(results["TLSv1_2"], "TLSv1.2")
        self.assertEqual(results["TLSv1_3"], "TLSv1.3")

    async def test_tls13_only(self) -> None:
        """
        With tls_min_version 1.3, a TLS 1.2 client is refused.
        """
        port = await self.start(tls_min_version="1.3")
        refused = await threads.deferToThread(
            tls_handshake, port, self.pki.ca_cert, ssl.TLSVersion.TLSv1_2
        )
        served = await threads.deferToThread(
            tls_handshake, port, self.pki.ca_cert, ssl.TLSVersion.TLSv1_3
        )
        self.assertIn("refused", refused)
        self.assertEqual(served, "TLSv1.3")
