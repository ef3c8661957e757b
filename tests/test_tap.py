"""
The twistd plugin without running twistd: option parsing, the service tree
on a memory reactor, plugin discovery, and the ``lambdagw check`` command.
"""

from __future__ import annotations

import io
import signal
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.typed import as_reactor
from twisted_lambdagw.daemon import cli
from twisted_lambdagw.daemon.gctune import GCTuning
from twisted_lambdagw.daemon.lifecycle import DaemonService, DrainService, SequentialService
from twisted_lambdagw.daemon.tap import Options, makeService
from twisted_lambdagw.gateway import LocalBackendService, PoolService
from twisted_lambdagw.invokers.aws.agent import KeepAliveAgent
from twisted_lambdagw.invokers.aws.credentials import CredentialsService
from twisted_lambdagw.invokers.aws.upstream import EndpointCache
from twisted_lambdagw.policies.authorizers.service import Authorizers
from twisted_lambdagw.policies.limits.service import LimitsStoreService
from twisted_lambdagw.server.request import GatewayRequest
from twisted_lambdagw.server.site import GatewaySite

from .process_fixtures import REPO_ROOT, python_probe, temp_dir, write_config

CONFIG = """
[gateway]
listen = tcp:8080:interface=127.0.0.1
         tcp:8081:interface=127.0.0.2

[aws]
region = us-west-2
access_key_id = AKIDEXAMPLEFAKEKEY01
secret_access_key = fake-secret-for-tests-only
; botocore's endpoint resolver costs a fraction of a second per route
endpoint_url = http://127.0.0.1:1

[route:/lambda/]
qualifier = prod

[route:/lambda/special]
single = special-fn
"""


class ObservedPool(KeepAliveAgent):
    """
    A real connection pool whose closing the test decides and can see.
    """

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor, EndpointCache(reactor))
        self.closing: list[Deferred[None]] = []

    def closeCachedConnections(self) -> Deferred[None]:
        closing: Deferred[None] = Deferred()
        self.closing.append(closing)
        return closing


class OptionsTests(SynchronousTestCase):
    """
    The plugin's options read and check the config file while parsing.
    """

    def setUp(self) -> None:
        self.dir = temp_dir(self)
        self.config = write_config(self.dir, CONFIG)

    def parse(self, *argv: str) -> Options:
        options = Options(reactor=as_reactor(MemoryReactor()))
        options.parseOptions(list(argv))
        return options

    def parse_error(self, *argv: str) -> tuple[Options, str]:
        options = Options(reactor=as_reactor(MemoryReactor()))
        error = self.assertRaises(usage.UsageError, options.parseOptions, list(argv))
        return options, str(error)

    def test_config_is_loaded(self) -> None:
        """
        --config names the file; its routes and listen endpoints are parsed.
        """
        options = self.parse("--config", str(self.config))
        assert options.config is not None
        self.assertEqual(options.config.path, str(self.config))
        self.assertEqual(
            options.config.gateway.listen,
            ("tcp:8080:interface=127.0.0.1", "tcp:8081:interface=127.0.0.2"),
        )
        self.assertEqual(
            [route.prefix for route in options.config.routes], ["/lambda/", "/lambda/special/"]
        )
        self.assertEqual(options["listen"], [])

    def test_listen_replaces_config(self) -> None:
        """
        --listen repeats, and together its values replace the config's listen.
        """
        options = self.parse(
            "--config", str(self.config), "--listen", "tcp:9001", "--listen", "unix:/tmp/gw.sock"
        )
        assert options.config is not None
        self.assertEqual(options.config.gateway.listen, ("tcp:9001", "unix:/tmp/gw.sock"))
        self.assertEqual(options.config.routes[0].qualifier, "prod")

    def test_short_config_option(self) -> None:
        """
        -c is --config.
        """
        options = self.parse("-c", str(self.config))
        assert options.config is not None
        self.assertEqual(options.config.path, str(self.config))

    def test_bad_config_is_one_line(self) -> None:
        """
        An unknown key is a UsageError of one line naming file, section and key; no usage text.
        """
        bad = write_config(self.dir, CONFIG + "colour = blue\n", "bad.ini")
        options, message = self.parse_error("--config", str(bad))
        self.assertEqual(message, f"{bad}: [route:/lambda/special] colour: unknown key")
        self.assertEqual(options.getUsage(), "")
        self.assertIsNone(options.config)

    def test_bad_value_names_the_key(self) -> None:
        """
        A bad size is reported with its section and key.
        """
        text = CONFIG.replace("[gateway]\n", "[gateway]\nmax_body_size = lots\n")
        bad = write_config(self.dir, text, "b.ini")
        _, message = self.parse_error("--config", str(bad))
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(f"{bad}: [gateway] max_body_size: "), message)

    def test_missing_config_file(self) -> None:
        """
        A config file that does not exist is one line naming it.
        """
        missing = self.dir / "nope.ini"
        options, message = self.parse_error("--config", str(missing))
        self.assertEqual(message, f"{missing}: cannot read config file: No such file or directory")
        self.assertEqual(options.getUsage(), "")

    def test_bad_listen_endpoint(self) -> None:
        """
        A --listen value that is not an endpoint is a config error naming it.
        """
        _, message = self.parse_error("--config", str(self.config), "--listen", "nonsense:1")
        self.assertNotIn("\n", message)
        self.assertTrue(
            message.startswith(f"{self.config}: [gateway] listen: bad endpoint 'nonsense:1': "),
            message,
        )

    def test_usage_without_error(self) -> None:
        """
        Before any error, the usage text is Twisted's, listing the options.
        """
        text = Options(reactor=as_reactor(MemoryReactor())).getUsage()
        self.assertIn("--config=", text)
        self.assertIn("--listen=", text)


class MakeServiceTests(SynchronousTestCase):
    """
    makeService builds the pool's service and one listener per endpoint.
    """

    def setUp(self) -> None:
        config = write_config(temp_dir(self), CONFIG)
        self.options = Options(reactor=as_reactor(MemoryReactor()))
        self.options.parseOptions(
            [
                *("--config", str(config)),
                *("--listen", "tcp:9001:interface=127.0.0.1"),
                *("--listen", "tcp:9002:interface=127.0.0.2"),
            ]
        )
        self.reactor = MemoryReactorClock()
        self.pool = ObservedPool(self.reactor)
        service = makeService(self.options, reactor=as_reactor(self.reactor), pool=self.pool)
        assert isinstance(service, MultiService)
        self.service = service

    def test_service_tree(self) -> None:
        """
        The gateway's service (pool, local backend, credentials, limits store,
        authorizers, drain), then one endpoint service per --listen.

        The local backend's and the limits store's services are there with no
        local route and no limits: a reload may add them.
        """
        self.assertTrue(verifyObject(IService, self.service))
        self.assertIsInstance(self.service, DaemonService)
        children = self.service.services
        self.assertEqual(len(children), 3)
        gateway_service = children[0]
        assert isinstance(gateway_service, SequentialService)
        (
            pool_service,
            local_service,
            credentials_service,
            limits_service,
            authorizers,
            drain_service,
        ) = gateway_service.services
        assert isinstance(limits_service, LimitsStoreService)
        self.assertIsNone(limits_service.shared)
        self.assertIsInstance(authorizers, Authorizers)
        assert isinstance(local_service, LocalBackendService)
        self.assertIsNone(local_service.local)
        self.assertIsInstance(credentials_service, CredentialsService)
        assert isinstance(pool_service, PoolService)
        self.assertIs(pool_service.pool, self.pool)
        assert isinstance(drain_service, DrainService)
        self.assertEqual(drain_service.timeout, 30.0)
        for child in children[1:]:
            self.assertIsInstance(child, StreamServerEndpointService)

    def test_start_listens(self) -> None:
        """
        Starting the service listens on every endpoint with the gateway's Site.
        """
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        listening = [(port, interface) for port, _, _, interface in self.reactor.tcpServers]
        self.assertEqual(listening, [(9001, "127.0.0.1"), (9002, "127.0.0.2")])
        factories = [factory for _, factory, _, _ in self.reactor.tcpServers]
        self.assertIs(factories[0], factories[1])
        site = factories[0]
        assert isinstance(site, GatewaySite)
        self.assertFalse(site.displayTracebacks)
        request_factory: Any = site.requestFactory
        self.assertTrue(issubclass(request_factory, GatewayRequest))
        self.assertEqual(request_factory.max_body_size, 6 * 1024 * 1024)

    def test_stop_closes_pool(self) -> None:
        """
        Stopping the service closes the pool, and waits until it has closed.
        """
        self.service.startService()
        self.assertEqual(self.pool.closing, [])
        stopped = self.service.stopService()
        assert stopped is not None
        [closing] = self.pool.closing
        self.assertNoResult(stopped)
        closing.callback(None)
        self.successResultOf(stopped)

    def test_stop_order(self) -> None:
        """
        Stopping stops the listeners at once, drains the request under way, then closes the pool.
        """
        self.service.privilegedStartService()
        self.service.startService()
        gateway_service = self.service.services[0]
        assert isinstance(gateway_service, MultiService)
        drain = gateway_service.services[-1]
        assert isinstance(drain, DrainService)
        client: Any = StubTreq(drain.resource)
        # Lambda never answers: the pool's connection attempt stays pending.
        waiting = client.get("http://gw/lambda/fn")
        client.flush()
        self.assertEqual(drain.resource.active, 1)
        self.reactor.advance(1)

        stopped = self.service.stopService()
        listeners = self.service.services[1:]
        self.assertEqual([listener.running for listener in listeners], [False, False])
        self.assertTrue(drain.resource.draining)
        # The route's timeout (30 s from the request) ends it before the
        # drain's (30 s from the stop); until then the pool stays open.
        self.reactor.advance(28.9)
        client.flush()
        self.assertEqual((drain.resource.active, self.pool.closing), (1, []))
        self.reactor.advance(0.1)
        client.flush()
        self.assertEqual(drain.resource.active, 0)
        self.assertEqual(self.successResultOf(waiting).code, 504)
        [closing] = self.pool.closing
        self.assertNoResult(stopped)
        closing.callback(None)
        self.successResultOf(stopped)

    def test_sigterm_handler(self) -> None:
        """
        Once the reactor runs, the daemon takes SIGTERM (stop) and SIGHUP
        (reload) through the injected installer.
        """
        installed: list[int] = []
        service = makeService(
            self.options,
            reactor=as_reactor(self.reactor),
            pool=self.pool,
            install_signal=lambda number, handler: installed.append(number),
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(installed, [])
        self.reactor.run()
        self.assertEqual(installed, [signal.SIGTERM, signal.SIGHUP])

    def test_collector_tuned_once_running(self) -> None:
        """
        Asked to (as under twistd), the daemon tunes the garbage collector once
        the reactor runs; by default, with a reactor given, it leaves it alone.
        """

        def tunings(reactor: MemoryReactorClock) -> list[object]:
            return [
                hook
                for hook, _, _ in reactor.whenRunningHooks
                if isinstance(getattr(hook, "__self__", None), GCTuning)
            ]

        self.assertEqual(tunings(self.reactor), [])
        reactor = MemoryReactorClock()
        makeService(self.options, reactor=as_reactor(reactor), pool=self.pool, tune_gc=True)
        [hook] = tunings(reactor)
        self.assertEqual(getattr(hook, "__name__", None), "start")
        [(_, (load, clock), _)] = [entry for entry in reactor.whenRunningHooks if entry[0] is hook]
        # The load followed is the requests the gateway serves: none yet.
        self.assertEqual(load(), 0)
        self.assertIs(clock, reactor)

    def test_default_pool_is_owned(self) -> None:
        """
        Without an injected pool, the service owns a persistent pool of its own.
        """
        service = makeService(self.options, reactor=as_reactor(self.reactor))
        assert isinstance(service, MultiService)
        gateway_service = service.services[0]
        assert isinstance(gateway_service, MultiService)
        pool_service = gateway_service.services[0]
        assert isinstance(pool_service, PoolService)
        self.assertIsInstance(pool_service.pool, KeepAliveAgent)
        service.startService()
        self.successResultOf(service.stopService())


class PluginTests(SynchronousTestCase):
    """
    twistd finds the plugin, and finding it loads none of the gateway.
    """

    def test_discovered(self) -> None:
        """
        "lambdagw" is among the IServiceMaker plugins, and its options are
        ours: those that print a config error themselves.
        """
        from twisted_lambdagw.daemon.tap import CommandLineOptions

        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("lambdagw", makers)
        self.assertIs(makers["lambdagw"].options, CommandLineOptions)
        self.assertTrue(issubclass(CommandLineOptions, Options))

    def test_config_error_exits(self) -> None:
        """
        The command-line options print a config error alone and exit 1.
        """
        import io

        from twisted_lambdagw.daemon.tap import CommandLineOptions

        err = io.StringIO()
        options = CommandLineOptions(as_reactor(MemoryReactor()), stderr=err)
        missing = "/nonexistent-lambdagw/gw.ini"
        exit = self.assertRaises(SystemExit, options.parseOptions, ["--config", missing])
        self.assertEqual(exit.code, 1)
        self.assertEqual(
            err.getvalue(), f"{missing}: cannot read config file: No such file or directory\n"
        )

    def test_service_maker(self) -> None:
        """
        The dropin's object provides IServiceMaker.
        """
        from twisted.plugins import lambdagw_dropin

        self.assertTrue(verifyObject(IServiceMaker, lambdagw_dropin.lambdagw))
        self.assertEqual(lambdagw_dropin.lambdagw.tapname, "lambdagw")

    def test_dropin_is_lazy(self) -> None:
        """
        Importing the dropin imports neither the gateway nor the reactor.
        """
        probe = (
            "import json, sys\n"
            "import twisted.plugins.lambdagw_dropin as d\n"
            "print(json.dumps({'file': d.__file__, 'modules': sorted(m for m in sys.modules\n"
            "    if m.split('.')[0] in ('twisted_lambdagw', 'botocore', 'treq')\n"
            "    or m == 'twisted.internet.reactor')}))\n"
        )
        report = python_probe(self, probe)
        self.assertEqual(
            Path(report["file"]).resolve(), REPO_ROOT / "twisted" / "plugins" / "lambdagw_dropin.py"
        )
        self.assertEqual(report["modules"], [])


class CheckCommandTests(SynchronousTestCase):
    """
    ``lambdagw check`` validates a config and prints its route table.
    """

    def setUp(self) -> None:
        self.dir = temp_dir(self)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()

    def check(self, path: Path) -> int:
        return cli.main(["check", "--config", str(path)], stdout=self.stdout, stderr=self.stderr)

    def test_good_config(self) -> None:
        """
        A good config prints OK and each route's effective settings, one
        block per route, longest prefix first; status 0.
        """
        text = CONFIG.replace(
            "qualifier = prod\n",
            "qualifier = prod\ninclude = hello* api-*\nexclude = *-internal\n"
            "name_prepend = acme-\nheader_upstream = X-Real-IP {remote}\n"
            "    X-Scheme {scheme}\n",
        )
        path = write_config(self.dir, text + "stream = yes\nformat = apigw-v2\n")
        self.assertEqual(self.check(path), 0)
        self.assertEqual(self.stderr.getvalue(), "")
        self.assertEqual(
            self.stdout.getvalue(),
            f"""\
{path}: OK, 2 route(s)
[route:/lambda/special/]
  backend:           aws
  region:            us-west-2
  endpoint:          http://127.0.0.1:1
  qualifier:         $LATEST (none set)
  auth:              none
  chain:             admit: function name and body size
  chain:             admit: admission (max_in_flight 10000)
  single:            special-fn (every path invokes it)
  format:            apigw-v2
  invocation_type:   RequestResponse
  stream:            yes, idle timeout 30s, prelude auto
  timeout:           30s
  strip_path_prefix: no
  header_upstream:   -

[route:/lambda/]
  backend:           aws
  region:            us-west-2
  endpoint:          http://127.0.0.1:1
  qualifier:         prod
  auth:              none
  chain:             admit: function name and body size
  chain:             admit: admission (max_in_flight 10000)
  function:          acme-<name>
  name_prepend:      'acme-'
  name_append:       ''
  include:           hello* api-*
  exclude:           *-internal
  format:            httpjson
  invocation_type:   RequestResponse
  stream:            no
  timeout:           30s
  strip_path_prefix: no
  header_upstream:   X-Real-IP: {{remote}}
  header_upstream:   X-Scheme: {{scheme}}
""",
        )

    def test_local_and_basic_auth(self) -> None:
        """
        A local route shows its functions directory (the config's own, when
        relative), and basic auth its realm and users file.
        """
        (self.dir / "fns").mkdir()
        (self.dir / "users").write_text("")
        path = write_config(
            self.dir,
            "[auth]\nusers_file = users\nrealm = ops\n[local]\nfunctions_dir = fns\n"
            "[route:/l/]\nbackend = local\ntimeout = 2m\nstrip_path_prefix = yes\n"
            "invocation_type = Event\n",
        )
        self.assertEqual(self.check(path), 0, self.stderr.getvalue())
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(lines[1], "[route:/l/]")
        self.assertEqual(lines[2], f"  backend:           local, functions in {self.dir}/fns")
        self.assertEqual(
            lines[3], f"  auth:              basic, realm 'ops', users in {self.dir}/users"
        )
        self.assertIn("  include:           * (every name)", lines)
        self.assertIn("  invocation_type:   Event", lines)
        self.assertIn("  timeout:           120s", lines)
        self.assertIn("  strip_path_prefix: yes", lines)

    def test_chains(self) -> None:
        """
        Each route's CORS and limits are shown in its chain, in the order
        they run, with the limits store (nothing is connected to).
        """
        path = write_config(
            self.dir,
            CONFIG.replace("[gateway]", "[gateway]\nlimits_store = redis://127.0.0.1:1/0\n")
            + "cors_allow_origins = https://app.example.com\nrate_limit = 5/s\nquota = 9/h\n",
        )
        self.assertEqual(self.check(path), 0, self.stderr.getvalue())
        self.assertIn(
            "  chain:             cors: cors origins https://app.example.com, methods *,"
            " headers *\n"
            "  chain:             limit-before-auth: limit rate 5/s burst 5, quota 9/h per route"
            " (redis redis://127.0.0.1:1/0, store down: allow)\n"
            "  chain:             admit: function name and body size\n",
            self.stdout.getvalue(),
        )

    def test_bad_config(self) -> None:
        """
        A bad config prints one line on stderr, nothing on stdout; status 1.
        """
        path = write_config(self.dir, CONFIG.replace("qualifier = prod", "qualifier = a:b"))
        self.assertEqual(self.check(path), 1)
        self.assertEqual(self.stdout.getvalue(), "")
        message = self.stderr.getvalue()
        self.assertEqual(message.count("\n"), 1)
        self.assertTrue(
            message.startswith(f"lambdagw: {path}: [route:/lambda/] qualifier: "), message
        )

    def test_bad_endpoint(self) -> None:
        """
        check also parses the listen endpoints, as twistd would.
        """
        path = write_config(self.dir, CONFIG.replace("tcp:8081", "tcp:notaport"))
        self.assertEqual(self.check(path), 1)
        self.assertIn("[gateway] listen: bad endpoint", self.stderr.getvalue())
