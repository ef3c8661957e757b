"""
SIGHUP to a real ``twistd -n lambdagw``: the config file, the users file and
the TLS certificates are read again without dropping a connection.

A request in flight finishes with the route it started with; an idle
keep-alive connection keeps working and sees the new routes; a broken file
is refused in one log line and the old config keeps serving; the next TLS
handshake shows the new certificate while an open TLS connection goes on;
with ``workers = 2`` both processes serve the new config.  Blocking clients
(``http.client``) run in threads, so the connections are plain sockets a
user's client would hold.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from .process_fixtures import twistd_command
from .test_twistd_e2e import (
    ACCESS_KEY,
    LISTENING,
    READY,
    REGION,
    SECRET_KEY,
    Child,
    LoopbackLambdaTestCase,
)
from .tls_fixtures import escape, make_pki

RELOADED = re.compile(rb"reloaded (\S+): (\d+) route")
WORKER_RELOADED = re.compile(rb"\[worker 1 [^\]]*\] reloaded")
REFUSED = re.compile(rb"reload refused[^\n]*\n")


def named(name: str) -> Any:
    def handler(event: Any, context: Any) -> Any:
        return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": name}

    return handler


def get(
    connection: http.client.HTTPConnection, path: str
) -> tuple[int, bytes, http.client.HTTPResponse]:
    """
    One GET on C{connection} (blocking), its status and whole body.
    """
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read(), response


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer_serial(connection: http.client.HTTPSConnection) -> int:
    assert connection.sock is not None
    der = connection.sock.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


class ReloadTests(LoopbackLambdaTestCase):
    """
    ``kill -HUP`` on a running gateway, checked from outside.
    """

    timeout = 90

    def config_text(self, lambda_port: int, routes: str, gateway: str = "") -> str:
        return (
            f"[gateway]\n{gateway}\n[aws]\nregion = {REGION}\n"
            f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
            f"endpoint_url = http://127.0.0.1:{lambda_port}\n\n{routes}"
        )

    async def start(
        self, routes: str, gateway: str = "", listen: str = "tcp:0:interface=127.0.0.1"
    ) -> tuple[Child, Path, int, int]:
        """
        The gateway on C{routes}: its process, config file, port and the fake Lambda's port.
        """
        self.pending: Deferred[Any] = Deferred()
        functions = {
            "hello": named("hello"),
            "bye": named("bye"),
            "slow": lambda e, c: self.pending,
        }
        self.fake, lambda_port = await self.start_fake_lambda(functions)
        self.lambda_port = lambda_port
        path = self.home / "gw.ini"
        path.write_text(self.config_text(lambda_port, routes, gateway))
        argv = [*twistd_command(), "-n", "--pidfile=", "lambdagw", "--config", str(path)]
        child = self.spawn([*argv, "--listen", listen])
        listening = await child.printed(LISTENING)
        await child.printed(READY)
        return child, path, int(listening.group(1)), lambda_port

    def rewrite(self, path: Path, routes: str, gateway: str = "") -> None:
        path.write_text(self.config_text(self.lambda_port, routes, gateway))

    async def hup(self, child: Child, pattern: re.Pattern[bytes] = RELOADED) -> None:
        """
        SIGHUP the gateway and wait until it logged C{pattern} once more than before.
        """
        seen = len(pattern.findall(child.output))
        self.signal(child, signal.SIGHUP)
        for _ in range(400):
            if len(pattern.findall(child.output)) > seen:
                return
            await self.sleep(0.025)
        self.fail(f"no {pattern.pattern!r} after SIGHUP:\n{child.text}")

    async def sleep(self, seconds: float) -> None:
        from twisted.internet.task import deferLater

        await deferLater(self.reactor, seconds)

    async def test_request_in_flight_finishes_with_old_route(self) -> None:
        """
        A slow request under way during the reload is answered by the
        function its route chose; the next request sees the new routes.
        """
        child, path, port, _ = await self.start("[route:/lambda/]\n")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        slow = deferToThread(get, connection, "/lambda/slow")
        for _ in range(400):
            if self.fake.calls:
                break
            await self.sleep(0.025)
        self.assertEqual([c.function for c in self.fake.calls], ["slow"])
        self.rewrite(path, "[route:/v2/]\nsingle = bye\n")
        await self.hup(child)
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        status, body, _ = await deferToThread(get, fresh, "/lambda/hello")
        self.assertEqual(status, 404)
        self.pending.callback({"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "late"})
        status, body, _ = await slow
        self.assertEqual((status, body), (200, b"late"))
        self.assertEqual(await deferToThread(get, fresh, "/v2/x"), (200, b"bye", ANY))
        connection.close()
        fresh.close()

    async def test_idle_keep_alive_connection_sees_new_routes(self) -> None:
        """
        A kept-alive connection idle across the reload goes on working, on
        the same socket, with the new routes.
        """
        child, path, port, _ = await self.start("[route:/lambda/]\n")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self.assertEqual(
            (await deferToThread(get, connection, "/lambda/hello"))[:2], (200, b"hello")
        )
        assert connection.sock is not None
        before = connection.sock.getsockname()
        self.rewrite(path, "[route:/v2/]\nsingle = bye\n")
        await self.hup(child)
        self.assertEqual((await deferToThread(get, connection, "/v2/x"))[:2], (200, b"bye"))
        self.assertEqual((await deferToThread(get, connection, "/lambda/hello"))[0], 404)
        assert connection.sock is not None
        self.assertEqual(connection.sock.getsockname(), before)
        connection.close()

    async def test_broken_file_refused_old_config_stays(self) -> None:
        """
        A file with an error: one log line naming file, section and key;
        the old routes keep serving.
        """
        child, path, port, _ = await self.start("[route:/lambda/]\n")
        self.rewrite(path, "[route:/lambda/]\ntimeout = soon\n")
        await self.hup(child, REFUSED)
        [line] = REFUSED.findall(child.output)
        self.assertIn(f"{path}: [route:/lambda/] timeout:".encode(), line)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self.assertEqual(
            (await deferToThread(get, connection, "/lambda/hello"))[:2], (200, b"hello")
        )
        connection.close()

    async def test_new_certificate_on_next_handshake(self) -> None:
        """
        New key and certificate files: the next handshake shows the new
        certificate; a TLS connection opened before goes on with the old one.
        """
        pki = make_pki(str(self.home))
        listen = (
            f"ssl:0:interface=127.0.0.1:privateKey={escape(pki.server_key)}"
            f":certKey={escape(pki.server_cert)}"
        )
        child, _, port, _ = await self.start("[route:/lambda/]\n", listen=listen)
        old = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=tls_context())
        self.assertEqual((await deferToThread(get, old, "/lambda/hello"))[:2], (200, b"hello"))
        first = peer_serial(old)
        make_pki(str(self.home))
        await self.hup(child)
        new = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=tls_context())
        self.assertEqual((await deferToThread(get, new, "/lambda/hello"))[:2], (200, b"hello"))
        self.assertNotEqual(peer_serial(new), first)
        self.assertEqual((await deferToThread(get, old, "/lambda/hello"))[:2], (200, b"hello"))
        self.assertEqual(peer_serial(old), first)
        old.close()
        new.close()

    async def test_workers_both_reload(self) -> None:
        """
        With workers = 2 the parent and the worker both serve the new
        routes (the access log says which process answered).
        """
        log = self.home / "access.log"
        child, path, port, _ = await self.start(
            "[route:/lambda/]\n", gateway=f"workers = 2\naccess_log = {log}\n"
        )
        await child.printed(re.compile(rb"started worker 1 of 2"))
        self.rewrite(
            path, "[route:/v2/]\nsingle = bye\n", gateway=f"workers = 2\naccess_log = {log}\n"
        )
        await self.hup(child, WORKER_RELOADED)
        served: set[int] = set()
        for _ in range(40):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            self.assertEqual((await deferToThread(get, connection, "/v2/x"))[:2], (200, b"bye"))
            connection.close()
        for _ in range(200):
            records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            served = {r.get("worker", 0) for r in records if r.get("path") == "/v2/x"}
            if len([r for r in records if r.get("path") == "/v2/x"]) >= 40:
                break
            await self.sleep(0.025)
        self.assertEqual(served, {0, 1})

    def signal(self, child: Child, number: int) -> None:
        transport = child.transport
        assert transport is not None
        transport.signalProcess(number)


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY: Any = _Any()
