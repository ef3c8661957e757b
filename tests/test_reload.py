"""
Reloading a gateway in place: L{Gateway.reload}, L{Reloader} and L{ReloadableTLS}.

The gateway is the real one, driven through a real Site by StubTreq, with a
fake Lambda API and a task.Clock; the processes and signals are in
tests/test_reload_e2e.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import Config
from twisted_lambdagw.daemon.listen import ReloadableTLS, certificate_options
from twisted_lambdagw.daemon.reload import (
    STARTUP_ONLY,
    Reloader,
    keep_startup_keys,
    read_config,
    restart_needed,
)
from twisted_lambdagw.server.resource import Binding
from twisted_lambdagw.server.state import RoutingState, retire

from .gateway_fixtures import BASE_CONFIG, FakeAWSGateway, config_from
from .process_fixtures import temp_dir, write_config
from .tls_fixtures import make_pki


def answer(text: str) -> Any:
    def handler(event: Any, context: Any) -> Any:
        return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": text}

    return handler


class Workers:
    """
    Records what a parent would hand its workers.
    """

    def __init__(self) -> None:
        self.configs: list[Config] = []
        self.signals: list[str] = []

    def reload(self, config: Config) -> None:
        self.configs.append(config)

    def reopen_logs(self) -> None:
        self.signals.append("reopen")


class GatewayReloadTests(SynchronousTestCase):
    """
    L{Gateway.reload} swaps the routing state whole.
    """

    def setUp(self) -> None:
        self.gw = FakeAWSGateway(
            "[route:/old/]\n",
            {"a": answer("A"), "b": answer("B")},
        )

    def get(self, url: str) -> tuple[int, bytes]:
        d = self.gw.client.get(url)
        self.gw.flush()
        response = self.successResultOf(d)
        body = self.gw.client.content(response)
        self.gw.flush()
        return response.code, self.successResultOf(body)

    def reload(self, routes: str) -> None:
        d = Deferred.fromCoroutine(self.gw.gateway.reload(config_from(BASE_CONFIG + routes)))
        self.gw.flush()
        self.successResultOf(d)

    def test_new_requests_see_new_routes(self) -> None:
        """
        After a reload, a removed route is a 404 and an added one serves.
        """
        self.assertEqual(self.get("http://gw/old/a"), (200, b"A"))
        self.reload("[route:/new/]\nsingle = b\n")
        self.assertEqual(self.get("http://gw/old/a")[0], 404)
        self.assertEqual(self.get("http://gw/new/anything"), (200, b"B"))

    def test_request_in_flight_keeps_its_state(self) -> None:
        """
        A request that arrived before the swap is served by the old route
        (its function name rules), and the old state is retired only once it
        is over.
        """
        pending: Deferred[Any] = Deferred()
        self.gw.lambda_api.functions["slow"] = lambda event, context: pending
        d = self.gw.client.get("http://gw/old/slow")
        self.gw.flush()
        old = self.gw.gateway.resource.state
        self.assertEqual(old.use.active, 1)
        self.reload("[route:/old/]\ninclude = a\nname_prepend = x\n")
        new = self.gw.gateway.resource.state
        self.assertIsNot(new, old)
        self.assertTrue(old.use.retired)
        unused = old.use.when_unused()
        self.assertNoResult(unused)
        pending.callback({"type": "HTTPJSON-REP", "meta": {"status": 201}, "body": "slow"})
        self.gw.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 201)
        self.successResultOf(unused)
        self.assertEqual(old.use.active, 0)
        # The new route's rules apply to the next request.
        self.assertEqual(self.get("http://gw/old/slow")[0], 404)
        self.assertEqual([c.function for c in self.gw.lambda_api.calls], ["slow"])

    def test_refused_config_changes_nothing(self) -> None:
        """
        A config the gateway cannot serve raises ConfigError; the state stays.
        """
        before = self.gw.gateway.resource.state
        bad = config_from(
            BASE_CONFIG
            + "[route:/x/]\nsingle = arn:aws-cn:lambda:us-west-2:123456789012:function:f\n"
        )
        d = Deferred.fromCoroutine(self.gw.gateway.reload(bad))
        failure = self.failureResultOf(d)
        self.assertIn("[route:/x/] single: region us-west-2 is in partition", str(failure.value))
        self.assertIs(self.gw.gateway.resource.state, before)
        self.assertEqual(self.get("http://gw/old/a"), (200, b"A"))

    def test_settings_apply(self) -> None:
        """
        health_path and drain_timeout of the new [gateway] take effect.
        """
        d = Deferred.fromCoroutine(
            self.gw.gateway.reload(
                config_from(
                    "[gateway]\nhealth_path = /up\ndrain_timeout = 3s\n"
                    + BASE_CONFIG
                    + "[route:/old/]\n"
                )
            )
        )
        self.successResultOf(d)
        self.assertEqual(self.get("http://gw/up"), (200, b'{"status":"serving"}'))
        self.assertEqual(self.get("http://gw/healthz")[0], 404)
        self.assertEqual(self.gw.gateway.drain.timeout, 3.0)


class RetireTests(SynchronousTestCase):
    """
    L{retire} closes what the old state used once its requests are over.
    """

    def test_closes_after_last_request(self) -> None:
        state: RoutingState[Binding] = RoutingState.of([])
        state.use.enter()
        state.use.enter()
        closed: list[str] = []
        done = retire(state, [lambda: closed.append("pool")])
        state.use.leave()
        self.assertEqual(closed, [])
        state.use.leave()
        self.assertEqual(closed, ["pool"])
        self.successResultOf(done)

    def test_unused_closes_at_once(self) -> None:
        closed: list[str] = []
        state: RoutingState[Binding] = RoutingState.of([])
        self.successResultOf(retire(state, [lambda: closed.append("x")]))
        self.assertEqual(closed, ["x"])


class StartupKeysTests(SynchronousTestCase):
    """
    Which [gateway] keys need a restart, and that they keep their running value.
    """

    def test_changed_keys_listed_and_kept(self) -> None:
        route = "[route:/r/]\nbackend = local\n[local]\nfunctions_dir = .\n"
        running = config_from("[gateway]\nlisten = tcp:1\nworkers = 1\ntimeout = 5\n" + route)
        new = config_from("[gateway]\nlisten = tcp:2\nworkers = 2\ntimeout = 9\n" + route)
        self.assertEqual(restart_needed(running, new), ["listen", "workers"])
        kept = keep_startup_keys(running, new)
        self.assertEqual(kept.gateway.listen, ("tcp:1",))
        self.assertEqual(kept.gateway.workers, 1)
        self.assertEqual(kept.gateway.timeout, 9.0)
        self.assertEqual(restart_needed(running, kept), [])
        self.assertIn("access_log", STARTUP_ONLY)


class ReloaderTests(SynchronousTestCase):
    """
    L{Reloader}: the file read again, refusals logged in one line.
    """

    def setUp(self) -> None:
        self.home = temp_dir(self)
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.gw = FakeAWSGateway("[route:/old/]\n", {"a": answer("A")})
        self.path = self.write("[route:/old/]\n")
        self.workers = Workers()
        self.reopened: list[bool] = []
        self.reloader = Reloader(
            self.gw.config,
            self.gw.gateway,
            self.gw.gateway.site(),
            workers=self.workers,
            reopen=lambda: self.reopened.append(True),
            read=lambda path, listen: read_config(str(self.path), listen),
        )

    def write(self, routes: str) -> Path:
        return write_config(self.home, BASE_CONFIG + routes)

    def errors(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e["log_level"].name in ("error", "warn")]

    def test_broken_file_refused_in_one_line(self) -> None:
        """
        A file with an error is refused: one line naming file, section and
        key; the running state stays and the workers are told nothing.
        """
        before = self.gw.gateway.resource.state
        self.write("[route:/old/]\ntimeout = soon\n")
        self.assertFalse(self.successResultOf(self.reloader()))
        [line] = self.errors()
        self.assertIn(f"{self.path}: [route:/old/] timeout:", line)
        self.assertTrue(line.startswith("reload refused, the running configuration stays: "))
        self.assertNotIn("\n", line)
        self.assertIs(self.gw.gateway.resource.state, before)
        self.assertEqual(self.workers.configs, [])
        # The access logs are reopened all the same (log rotation).
        self.assertEqual(self.reopened, [True])
        self.assertEqual(self.workers.signals, ["reopen"])

    def test_restart_keys_logged_rest_applies(self) -> None:
        """
        A changed listen is logged as needing a restart; the routes apply,
        and the workers get the config with the running listen.
        """
        self.write("[gateway]\nlisten = tcp:9999\nmax_body_size = 1KB\n[route:/new/]\n")
        self.assertTrue(self.successResultOf(self.reloader()))
        [line] = self.errors()
        self.assertIn("[gateway] listen changed: it takes effect after a restart", line)
        [handed] = self.workers.configs
        self.assertEqual(handed.gateway.listen, self.gw.config.gateway.listen)
        self.assertEqual([r.prefix for r in handed.routes], ["/new/"])
        self.assertEqual(self.reloader.config, handed)


def serial(context: SSL.Context) -> int:
    """
    The serial number of the certificate a connection made with C{context} shows.
    """
    certificate = SSL.Connection(context).get_certificate(as_cryptography=True)
    assert certificate is not None
    return int(certificate.serial_number)


class ReloadableTLSTests(SynchronousTestCase):
    """
    L{ReloadableTLS} hands out the context of the files read last.
    """

    def test_new_context_after_reload_old_kept_when_bad(self) -> None:
        home = str(temp_dir(self))
        files = make_pki(home)
        tls = ReloadableTLS(lambda: certificate_options(files.server_key, files.server_cert))
        first = serial(tls.getContext())
        self.assertEqual(serial(tls.getContext()), first)
        make_pki(home)
        tls.reload()
        second = serial(tls.getContext())
        self.assertNotEqual(second, first)
        Path(files.server_cert).write_text("not a certificate")
        with self.assertRaises(ValueError):
            tls.reload()
        self.assertEqual(serial(tls.getContext()), second)
