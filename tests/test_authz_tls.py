"""
An issuer's keys over real TLS, with certificate checks: C{ca_file} says which CAs are trusted.

The discovery document and the JWKS are served over https on 127.0.0.1
with a certificate from a CA made here.  With that CA in C{ca_file} the
keys are fetched and tokens let in; with another CA, or the system's (which
never heard of it), the fetch fails: the request is a 500 and the log says
why, and nothing is fetched over a connection whose certificate did not
check out.
"""

from __future__ import annotations

import json
import os
from typing import Any

from treq.client import HTTPClient
from twisted.internet.ssl import PrivateCertificate
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from twisted_lambdagw.core.config_reader import parse_config

from .idp_fixtures import IdP, listen_gateway
from .loopback import real_reactor
from .process_fixtures import temp_dir
from .tls_fixtures import CertificateFiles, make_pki

FUNCTIONS = os.path.join(os.path.dirname(__file__), "functions")


class IssuerTLSTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        """
        The test's CAs, and an IdP on 127.0.0.1 serving https with a certificate from the first.
        """
        reactor = real_reactor()
        directory = str(temp_dir(self))
        os.makedirs(os.path.join(directory, "other"))
        self.pki: CertificateFiles = make_pki(directory)
        self.other_ca = make_pki(os.path.join(directory, "other")).ca_cert
        self.idp = IdP()
        with open(self.pki.server_key, "rb") as key, open(self.pki.server_cert, "rb") as cert:
            server = PrivateCertificate.loadPEM(key.read() + cert.read())
        port = reactor.listenSSL(0, Site(self.idp), server.options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.idp.issuer = f"https://127.0.0.1:{port.getHost().port}"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.logged: list[LogEvent] = []

    async def call(self, ca_file: str | None) -> tuple[int, Any]:
        """
        One request with a good token through a gateway trusting C{ca_file}'s CAs.
        """
        trust = f"ca_file = {ca_file}\n" if ca_file is not None else ""
        config = parse_config(
            f"[local]\nfunctions_dir = {FUNCTIONS}\n"
            f"[authorizer:users]\ntype = jwt\nissuer = {self.idp.issuer}\n"
            f"audience = web-app\n{trust}"
            "[route:/api/]\nbackend = local\nformat = apigw-v2\nauth = users\n",
            "gw.ini",
            environ={},
        )
        with capturedLogs() as events:
            _, base = listen_gateway(self, config)
            response = await self.http.get(
                base + "/api/probe",
                headers=Headers({b"Authorization": [f"Bearer {self.idp.token()}".encode()]}),
            )
            body = json.loads(await response.content())
        self.logged.extend(events)
        return response.code, body

    def fetch_failures(self) -> list[str]:
        return [
            formatEvent(event)
            for event in self.logged
            if "cannot fetch the keys" in event.get("log_format", "")
        ]

    async def test_trusted_ca(self) -> None:
        """
        The CA that signed the issuer's certificate in C{ca_file}: the keys come, the token passes.
        """
        code, body = await self.call(self.pki.ca_cert)
        self.assertEqual(code, 200, body)
        self.assertEqual(
            body["event"]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"], "alice"
        )
        self.assertEqual(self.idp.fetches, ["/.well-known/openid-configuration", "/jwks"])
        self.assertEqual(self.fetch_failures(), [])

    async def test_unknown_ca(self) -> None:
        """
        Another CA in C{ca_file}: the certificate does not check out, the keys
        are never fetched, the request is a 500 and the log says why.
        """
        code, body = await self.call(self.other_ca)
        self.assertEqual((code, body["error"]), (500, "authorizer failed"))
        self.assertEqual(self.idp.fetches, [])
        [failure, *_] = self.fetch_failures()
        self.assertIn(f"authorizer users: cannot fetch the keys of {self.idp.issuer}", failure)
        self.assertIn("certificate verify failed", failure)

    async def test_system_trust(self) -> None:
        """
        Without C{ca_file} the system's CAs are trusted, and they do not know the test CA.
        """
        code, body = await self.call(None)
        self.assertEqual((code, body["error"]), (500, "authorizer failed"))
        self.assertEqual(self.idp.fetches, [])
        self.assertNotEqual(self.fetch_failures(), [])
