"""
Credentials: resolved in threads at startup, refreshed by a timer before they
expire so no request waits, refreshed by force after ExpiredToken, roles
assumed through STS, and a startup that fails in one line when there are none.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from botocore.credentials import (
    ContainerProvider,
    CredentialResolver,
    Credentials,
    EnvProvider,
    RefreshableCredentials,
)
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.daemon.tap import Options, makeService
from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.invokers.aws.credentials import (
    BotocoreCredentials,
    CredentialSource,
    CredentialSpec,
    CredentialsService,
    credential_spec,
    resolve_at_startup,
)

from .aws_fixtures import isolated_session
from .gateway_fixtures import config_from
from .loopback import real_reactor
from .process_fixtures import temp_dir, write_config

UTC = datetime.UTC
T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class Threads:
    """
    A stand-in for deferToThread: jobs wait until the test runs them.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, f: Callable[[], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.jobs.append((f, d))
        return d

    def run_all(self) -> None:
        while self.jobs:
            f, d = self.jobs.pop(0)
            try:
                result = f()
            except Exception as e:
                d.errback(e)
            else:
                d.callback(result)


class BotocoreTime:
    """
    The time botocore's refreshable credentials see, moved by the test.
    """

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now

    def at(self, seconds_before_expiry: float, expiry: datetime.datetime) -> None:
        self.now = expiry - datetime.timedelta(seconds=seconds_before_expiry)


class Issuer:
    """
    Temporary credentials as an IMDS or STS would issue them: key N expires an hour after T0+N.
    """

    def __init__(self, fail_from: int | None = None) -> None:
        self.issued = 0
        self.fail_from = fail_from

    def expiry(self, n: int) -> datetime.datetime:
        return T0 + datetime.timedelta(hours=1, minutes=n)

    def __call__(self) -> dict[str, str]:
        n = self.issued
        if self.fail_from is not None and n >= self.fail_from:
            raise RuntimeError("metadata service unreachable")
        self.issued += 1
        return {
            "access_key": f"ASIAKEY{n}",
            "secret_key": f"secret{n}",
            "token": f"token{n}",
            "expiry_time": self.expiry(n).isoformat(),
        }


class Setup:
    """
    A source over refreshable credentials, a fake clock and hand-run threads.
    """

    def __init__(self, fail_from: int | None = None) -> None:
        self.threads = Threads()
        self.clock = Clock()
        self.time = BotocoreTime()
        self.issuer = Issuer(fail_from)
        self.resolved = 0

        def resolve() -> Credentials:
            self.resolved += 1
            issued = self.issuer()
            return RefreshableCredentials(
                issued["access_key"],
                issued["secret_key"],
                issued["token"],
                datetime.datetime.fromisoformat(issued["expiry_time"]),
                self.issuer,
                "iam-role",
                time_fetcher=self.time,
            )

        self.source = CredentialSource(
            self.threads, resolve=resolve, clock=self.clock, name="[route:/a/]"
        )

    def start(self) -> None:
        started = Deferred.fromCoroutine(self.source.start())
        self.threads.run_all()
        assert started.called

    def key(self) -> str:
        d = Deferred.fromCoroutine(self.source.frozen())
        assert d.called, "a request waited"
        result: list[Any] = []
        d.addBoth(result.append)
        return str(result[0].access_key)


class CredentialSourceTests(SynchronousTestCase):
    """
    A source resolves in a thread, then refreshes on its timer.
    """

    def test_start_resolves_in_a_thread(self) -> None:
        """
        Nothing is resolved on the calling thread; the provider is logged, the keys never.
        """
        s = Setup()
        with capturedLogs() as events:
            started = Deferred.fromCoroutine(s.source.start())
            self.assertNoResult(started)
            self.assertEqual(s.resolved, 0)
            s.threads.run_all()
            self.successResultOf(started)
        self.assertEqual(s.resolved, 1)
        [line] = [formatEvent(e) for e in events if e.get("routes") == "[route:/a/]"]
        self.assertIn("iam-role", line)
        self.assertIn("[route:/a/]", line)
        for event in events:
            text = formatEvent(event) + repr(event)
            self.assertNotIn("ASIAKEY0", text)
            self.assertNotIn("secret0", text)

    def test_requests_share_one_lookup(self) -> None:
        """
        Requests before the service started wait for a single lookup.
        """
        s = Setup()
        first = Deferred.fromCoroutine(s.source.frozen())
        second = Deferred.fromCoroutine(s.source.frozen())
        self.assertEqual(len(s.threads.jobs), 1)
        s.threads.run_all()
        self.assertEqual(self.successResultOf(first).access_key, "ASIAKEY0")
        self.assertEqual(self.successResultOf(second).access_key, "ASIAKEY0")

    def test_timer_refreshes_in_the_advisory_window(self) -> None:
        """
        Fifteen minutes before expiry the timer refreshes in a thread; requests never wait.
        """
        s = Setup()
        s.start()
        s.clock.advance(60)
        self.assertEqual(s.threads.jobs, [], "refreshed with an hour left")
        s.time.at(14 * 60, s.issuer.expiry(0))
        s.clock.advance(60)
        self.assertEqual(len(s.threads.jobs), 1)
        self.assertEqual(s.key(), "ASIAKEY0")
        s.threads.run_all()
        self.assertEqual(s.key(), "ASIAKEY1")
        self.assertEqual(s.issuer.issued, 2)

    def test_failed_refresh_keeps_the_current_keys(self) -> None:
        """
        A refresh that fails is logged; requests keep signing with the unexpired keys.
        """
        s = Setup(fail_from=1)
        s.start()
        s.time.at(5 * 60, s.issuer.expiry(0))  # botocore's mandatory window: it raises
        with capturedLogs() as events:
            s.clock.advance(60)
            s.threads.run_all()
        self.assertEqual(s.key(), "ASIAKEY0")
        [warning] = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertIn("unreachable", formatEvent(warning))
        s.clock.advance(60)
        self.assertEqual(len(s.threads.jobs), 1, "the timer tries again")

    def test_request_waits_only_at_expiry(self) -> None:
        """
        Within a minute of expiry (every refresh failed so far), requests wait for one.
        """
        s = Setup()
        s.start()
        s.time.at(30, s.issuer.expiry(0))
        first = Deferred.fromCoroutine(s.source.frozen())
        second = Deferred.fromCoroutine(s.source.frozen())
        self.assertNoResult(first)
        self.assertEqual(len(s.threads.jobs), 1)
        s.threads.run_all()
        self.assertEqual(self.successResultOf(first).access_key, "ASIAKEY1")
        self.assertEqual(self.successResultOf(second).access_key, "ASIAKEY1")

    def test_expired_and_unrefreshable_is_502(self) -> None:
        """
        Expired credentials that cannot be refreshed fail the request as a 502.
        """
        s = Setup(fail_from=1)
        s.start()
        s.time.at(-1, s.issuer.expiry(0))
        d = Deferred.fromCoroutine(s.source.frozen())
        s.threads.run_all()
        self.failureResultOf(d, InvokeFailed)

    def test_cancelled_waiter_does_not_break_the_others(self) -> None:
        """
        A request that gives up while waiting leaves the shared lookup intact.
        """
        s = Setup()
        gone = Deferred.fromCoroutine(s.source.frozen())
        staying = Deferred.fromCoroutine(s.source.frozen())
        gone.cancel()
        self.failureResultOf(gone, CancelledError)
        s.threads.run_all()
        self.assertEqual(self.successResultOf(staying).access_key, "ASIAKEY0")

    def test_forced_refresh_resolves_again(self) -> None:
        """
        After ExpiredToken the source is resolved afresh; a second caller reuses the result.
        """
        s = Setup()
        s.start()
        stale = self.successResultOf(Deferred.fromCoroutine(s.source.frozen()))
        newer = Deferred.fromCoroutine(s.source.refreshed(stale))
        s.threads.run_all()
        self.assertEqual(s.resolved, 2)
        self.assertEqual(self.successResultOf(newer).access_key, "ASIAKEY1")  # type: ignore[union-attr]
        again = self.successResultOf(Deferred.fromCoroutine(s.source.refreshed(stale)))
        self.assertEqual(again.access_key, "ASIAKEY1")  # type: ignore[union-attr]
        self.assertEqual(s.resolved, 2)

    def test_forced_refresh_joins_a_timer_refresh(self) -> None:
        """
        A forced refresh during a timer refresh that kept the old keys looks again.
        """
        s = Setup()
        s.start()
        stale = self.successResultOf(Deferred.fromCoroutine(s.source.frozen()))
        s.time.at(14 * 60, s.issuer.expiry(0))
        s.issuer.fail_from = 1  # the advisory refresh fails quietly in botocore
        s.clock.advance(60)
        newer = Deferred.fromCoroutine(s.source.refreshed(stale))
        self.assertEqual(len(s.threads.jobs), 1, "joined the timer's refresh")
        job, done = s.threads.jobs.pop(0)
        done.callback(job())
        s.issuer.fail_from = None
        s.threads.run_all()
        self.assertEqual(s.resolved, 2)
        self.assertEqual(self.successResultOf(newer).access_key, "ASIAKEY1")  # type: ignore[union-attr]

    def test_cancelled_forced_refresh(self) -> None:
        """
        Cancelling a call waiting for a forced refresh cancels it; nothing is swallowed.
        """
        s = Setup()
        s.start()
        stale = self.successResultOf(Deferred.fromCoroutine(s.source.frozen()))
        waiting = Deferred.fromCoroutine(s.source.refreshed(stale))
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        s.threads.run_all()

    def test_static_keys(self) -> None:
        """
        Static keys need no thread and cannot be refreshed.
        """
        source = CredentialSource.from_keys("AKID", "secret", "token")
        keys = self.successResultOf(Deferred.fromCoroutine(source.frozen()))
        self.assertEqual((keys.access_key, keys.token), ("AKID", "token"))
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(source.refreshed(keys))))
        self.successResultOf(Deferred.fromCoroutine(source.start()))

    def test_stop_stops_the_timer(self) -> None:
        """
        A stopped source schedules nothing more.
        """
        s = Setup()
        s.start()
        self.assertEqual(len(s.clock.getDelayedCalls()), 1)
        s.source.stop()
        self.assertEqual(s.clock.getDelayedCalls(), [])

    def test_no_timer_for_plain_credentials(self) -> None:
        """
        Credentials that never expire (keys in the environment) get no timer.
        """
        clock = Clock()
        source = CredentialSource(
            lambda f: succeed(f()), resolve=lambda: Credentials("AK", "SK"), clock=clock
        )
        self.successResultOf(Deferred.fromCoroutine(source.start()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_lookup_again_after_none(self) -> None:
        """
        A source that found nothing fails calls with 502, and looks again on the next.
        """
        found: list[Credentials | None] = [None, Credentials("AK", "SK")]
        source = CredentialSource(lambda f: succeed(f()), resolve=lambda: found.pop(0))
        self.failureResultOf(Deferred.fromCoroutine(source.frozen()), InvokeFailed)
        keys = self.successResultOf(Deferred.fromCoroutine(source.frozen()))
        self.assertEqual(keys.access_key, "AK")


class CredentialsServiceTests(SynchronousTestCase):
    """
    The service starts every source and says which found nothing.
    """

    def test_failure_is_one_error_line(self) -> None:
        """
        A source with no credentials is logged at error level, naming its routes.
        """
        source = CredentialSource(
            lambda f: succeed(f()), resolve=lambda: None, name="[route:/x/], [route:/y/]"
        )
        service = CredentialsService([source])
        with capturedLogs() as events:
            service.startService()
        [line] = [e for e in events if e.get("log_level") == LogLevel.error]
        self.assertIn("[route:/x/], [route:/y/]", formatEvent(line))
        self.assertIn("none found", formatEvent(line))
        service.stopService()


class SpecTests(SynchronousTestCase):
    """
    Which routes share which credentials.
    """

    def spec(self, text: str, prefix: str = "/a/") -> CredentialSpec:
        config = config_from(text)
        [route] = [r for r in config.routes if r.prefix == prefix]
        return credential_spec(config.aws, route)

    def test_route_keys_win(self) -> None:
        """
        Route keys over [aws] keys; [aws] keys with their session token.
        """
        text = "[aws]\nregion = us-east-1\naccess_key_id = AK\nsecret_access_key = SK\n"
        text += "session_token = TOK\n[route:/a/]\n[route:/b/]\naws_access = RK\naws_secret = RS\n"
        self.assertEqual(self.spec(text).access_key, "AK")
        self.assertEqual(self.spec(text).session_token, "TOK")
        route = self.spec(text, "/b/")
        self.assertEqual((route.access_key, route.session_token), ("RK", None))
        self.assertTrue(route.static)

    def test_chain_with_profile(self) -> None:
        """
        No keys: the default chain for [aws] profile; routes share it.
        """
        text = "[aws]\nregion = us-east-1\nprofile = ops\n[route:/a/]\n[route:/b/]\n"
        self.assertEqual(self.spec(text), self.spec(text, "/b/"))
        self.assertEqual(self.spec(text).profile, "ops")
        self.assertFalse(self.spec(text).static)

    def test_roles(self) -> None:
        """
        [aws] role_arn for every route; a route's own role with its own external id.
        """
        role = "arn:aws:iam::123456789012:role/invoker"
        other = "arn:aws:iam::123456789012:role/other"
        text = f"[aws]\nregion = eu-west-1\nrole_arn = {role}\nexternal_id = ext-1\n"
        text += f"[route:/a/]\n[route:/b/]\nrole_arn = {other}\nrole_session_name = gw-b\n"
        a, b = self.spec(text), self.spec(text, "/b/")
        self.assertEqual(
            (a.role_arn, a.external_id, a.role_session_name), (role, "ext-1", "lambdagw")
        )
        self.assertEqual((b.role_arn, b.external_id, b.role_session_name), (other, None, "gw-b"))
        self.assertEqual(a.region, "eu-west-1")
        self.assertIn(role, a.describe())
        self.assertNotIn("ext-1", a.describe() + repr(a))


class Provider:
    """
    A credential provider whose answer the test chooses; counts its calls.
    """

    def __init__(self, answer: Callable[[CredentialSpec], Credentials | None]) -> None:
        self.answer = answer
        self.calls: list[CredentialSpec] = []

    def resolve(self, spec: CredentialSpec) -> Credentials | None:
        self.calls.append(spec)
        return self.answer(spec)


CHAIN_CONFIG = "[aws]\nregion = us-east-1\n[route:/a/]\n[route:/b/]\n"


class StartupTests(SynchronousTestCase):
    """
    twistd resolves credentials before the reactor runs, failing in one line.
    """

    def test_none_found(self) -> None:
        """
        No credentials at all: one line naming the file and every route that needs them.
        """
        with self.assertRaises(ConfigError) as raised:
            resolve_at_startup(config_from(CHAIN_CONFIG), Provider(lambda spec: None))
        message = str(raised.exception)
        self.assertTrue(message.startswith("test.ini: [route:/a/], [route:/b/]: "), message)
        self.assertIn("no AWS credentials found", message)
        self.assertNotIn("\n", message)

    def test_failure(self) -> None:
        """
        A provider that raises (an SSO token expired, STS refused) is one line too.
        """

        def refuse(spec: CredentialSpec) -> Credentials:
            raise RuntimeError("AccessDenied:\n  not authorized to perform sts:AssumeRole")

        with self.assertRaises(ConfigError) as raised:
            resolve_at_startup(config_from(CHAIN_CONFIG), Provider(refuse))
        self.assertIn("failed: AccessDenied: not authorized", str(raised.exception))
        self.assertNotIn("\n", str(raised.exception))

    def test_timeout(self) -> None:
        """
        A lookup that hangs ends startup after the bounded wait.
        """
        release = threading.Event()
        self.addCleanup(release.set)

        def hang(spec: CredentialSpec) -> Credentials:
            release.wait(30)
            return Credentials("AK", "SK")

        with self.assertRaises(ConfigError) as raised:
            resolve_at_startup(config_from(CHAIN_CONFIG), Provider(hang), timeout=0.01)
        self.assertIn("did not finish within 0.01s", str(raised.exception))

    def test_once_per_spec_and_none_for_static(self) -> None:
        """
        Routes sharing the chain resolve it once; static keys need no lookup.
        """
        provider = Provider(lambda spec: Credentials("AK", "SK", method="env"))
        text = CHAIN_CONFIG + "[route:/c/]\naws_access = RK\naws_secret = RS\n"
        resolved = resolve_at_startup(config_from(text), provider)
        self.assertEqual(len(provider.calls), 1)
        [(credentials, keys)] = resolved.values()
        self.assertEqual((credentials.method, keys.access_key), ("env", "AK"))

    def test_options_fail_with_usage_error(self) -> None:
        """
        The plugin's options turn "no credentials" into a UsageError and print no usage text.
        """
        path = write_config(temp_dir(self), CHAIN_CONFIG)
        options = Options(reactor=MemoryReactor(), credentials=Provider(lambda spec: None))
        with self.assertRaises(usage.UsageError) as raised:
            options.parseOptions(["--config", str(path)])
        self.assertIn("no AWS credentials found", str(raised.exception))
        self.assertEqual(options.getUsage(), "")

    def test_resolved_credentials_are_adopted(self) -> None:
        """
        The service made from the options signs with what was resolved, without a thread.
        """
        path = write_config(temp_dir(self), CHAIN_CONFIG)
        provider = Provider(lambda spec: Credentials("AK", "SK", method="env"))
        options = Options(reactor=MemoryReactor(), credentials=provider)
        options.parseOptions(["--config", str(path)])
        gateway = Gateway(
            options.config,  # type: ignore[arg-type]
            Clock(),
            client=object(),
            run_in_thread=lambda f: self.fail("resolved again"),
            resolved=options.resolved,
        )
        [source] = gateway.credential_sources.values()
        self.assertEqual(source.method, "env")
        keys = self.successResultOf(Deferred.fromCoroutine(source.frozen()))
        self.assertEqual(keys.access_key, "AK")
        self.assertEqual(len(provider.calls), 1)
        makeService(options, reactor=MemoryReactorClock())


class BotocoreChainTests(SynchronousTestCase):
    """
    The real provider asks botocore's chain.
    """

    def test_environment(self) -> None:
        """
        Keys in the environment are found and say so (method env).
        """
        env = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "SKENV"}
        resolver = CredentialResolver([EnvProvider(environ=env)])
        provider = BotocoreCredentials(isolated_session(resolver))
        credentials = provider.resolve(CredentialSpec())
        assert credentials is not None
        self.assertEqual((credentials.method, credentials.access_key), ("env", "AKENV"))

    def test_nothing(self) -> None:
        """
        An empty chain is None, not an error.
        """
        provider = BotocoreCredentials(isolated_session(CredentialResolver([])))
        self.assertIsNone(provider.resolve(CredentialSpec()))


class FakeCredentialsEndpoint(Resource):
    """
    A loopback ECS container-credentials endpoint handing out a new key per call.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.served = 0

    def render_GET(self, request: Request) -> bytes:
        self.served += 1
        expiration = datetime.datetime.now(UTC) + datetime.timedelta(hours=6)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"connection", b"close")
        return json.dumps(
            {
                "AccessKeyId": f"ASIACONTAINER{self.served}",
                "SecretAccessKey": "container-secret",
                "Token": "container-token",
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ).encode()


class FakeSTS(Resource):
    """
    A loopback STS that answers AssumeRole and records what it was asked.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[dict[str, list[str]], str]] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        form = parse_qs(request.content.read().decode())
        authorization = (request.getHeader("authorization") or "").split("Credential=")[1]
        self.requests.append((form, authorization.split("/")[0]))
        n = len(self.requests)
        expiration = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
        request.setHeader(b"content-type", b"text/xml")
        request.setHeader(b"connection", b"close")
        return f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAROLE{n}</AccessKeyId>
      <SecretAccessKey>role-secret-{n}</SecretAccessKey>
      <SessionToken>role-token-{n}</SessionToken>
      <Expiration>{expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:lambdagw</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/invoker/lambdagw</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>sts-{n}</RequestId></ResponseMetadata>
</AssumeRoleResponse>""".encode()


class LoopbackProviderTests(TestCase):
    """
    Real botocore providers in real threads, against loopback services.
    """

    def serve(self, resource: Resource) -> str:
        reactor = real_reactor()
        port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def source(self, resolve: Callable[[], Credentials | None]) -> CredentialSource:
        reactor = real_reactor()

        def in_thread(f: Callable[[], Any]) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), f)

        return CredentialSource(in_thread, resolve=resolve, name="[route:/a/]")

    async def test_container_role_and_forced_refresh(self) -> None:
        """
        ECS task credentials resolve in a thread; a forced refresh fetches new ones.
        """
        endpoint = FakeCredentialsEndpoint()
        url = self.serve(endpoint) + "/creds"
        resolver = CredentialResolver(
            [ContainerProvider(environ={"AWS_CONTAINER_CREDENTIALS_FULL_URI": url})]
        )
        provider = BotocoreCredentials(isolated_session(resolver))
        source = self.source(lambda: provider.resolve(CredentialSpec()))
        await Deferred.fromCoroutine(source.start())
        self.assertEqual(source.method, "container-role")
        first = await Deferred.fromCoroutine(source.frozen())
        self.assertEqual(first.access_key, "ASIACONTAINER1")
        newer = await Deferred.fromCoroutine(source.refreshed(first))
        assert newer is not None
        self.assertEqual(newer.access_key, "ASIACONTAINER2")
        self.assertEqual(endpoint.served, 2)

    async def test_assume_role(self) -> None:
        """
        role_arn: STS is called with the base keys, the role, session name and external id.
        """
        sts = FakeSTS()
        provider = BotocoreCredentials(isolated_session(), sts_endpoint_url=self.serve(sts))
        spec = CredentialSpec(
            access_key="AKIABASE",
            secret_key="base-secret",
            role_arn="arn:aws:iam::123456789012:role/invoker",
            external_id="ext-42",
            role_session_name="gw-test",
            region="us-east-1",
        )
        source = self.source(lambda: provider.resolve(spec))
        await Deferred.fromCoroutine(source.start())
        keys = await Deferred.fromCoroutine(source.frozen())
        self.assertEqual((keys.access_key, keys.token), ("ASIAROLE1", "role-token-1"))
        self.assertEqual(source.method, "assume-role over config-keys")
        [(form, signed_by)] = sts.requests
        self.assertEqual(signed_by, "AKIABASE")
        self.assertEqual(form["Action"], ["AssumeRole"])
        self.assertEqual(form["RoleArn"], ["arn:aws:iam::123456789012:role/invoker"])
        self.assertEqual(form["RoleSessionName"], ["gw-test"])
        self.assertEqual(form["ExternalId"], ["ext-42"])
        newer = await Deferred.fromCoroutine(source.refreshed(keys))
        assert newer is not None
        self.assertEqual(newer.access_key, "ASIAROLE2")
