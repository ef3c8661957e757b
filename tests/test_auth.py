"""
HTTP basic auth: the users file, the twisted.cred checker and portal, the
strict header parser, and the guard in front of routes through a real Site.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import bcrypt
from treq.testing import StubTreq
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.formats import httpjson
from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply
from twisted_lambdagw.policies import PolicyServices, build_chain
from twisted_lambdagw.policies.auth import (
    UsersFileChecker,
    basic_authenticator,
    hash_password,
    load_users,
    parse_basic,
    parse_users,
)
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import FakeContext, InProcessInvoker

from .auth_fixtures import ALICE_HASH, BOB_HASH, HeldThreads, InlineThreads, basic, write
from .gateway_fixtures import FakeAWSGateway
from .scratch import temp_path


class UsersFileTests(SynchronousTestCase):
    """
    The users file: user:bcrypt-hash lines, comments and blank lines.
    """

    def test_valid_file(self) -> None:
        """
        Comments and blank lines are skipped; every user line is kept in order.
        """
        table = parse_users(
            f"# operators\n\nalice:{ALICE_HASH}\n   \n  bob:{BOB_HASH}  \n", "users"
        )
        self.assertEqual(table.names, ["alice", "bob"])
        self.assertEqual(table.find(b"bob"), BOB_HASH.encode())
        self.assertIsNone(table.find(b"carol"))
        self.assertIsNone(table.find(b"alic"))

    def assertBadLine(self, text: str, expected: str) -> None:
        with self.assertRaises(ConfigError) as raised:
            parse_users(text, "etc/users")
        self.assertIn(expected, str(raised.exception))
        self.assertNotIn("\n", str(raised.exception))

    def test_malformed_lines_name_file_and_line(self) -> None:
        """
        Each malformed line is a config error naming the file and the line number.
        """
        good = f"alice:{ALICE_HASH}\n"
        self.assertBadLine(good + "# c\nbob\n", "etc/users:3: not a 'user:bcrypt-hash' line")
        self.assertBadLine(good + "bob:secret\n", "etc/users:2: the hash for 'bob' is not a bcrypt")
        self.assertBadLine(good + f":{BOB_HASH}\n", "etc/users:2: the user name is empty")
        self.assertBadLine(
            good + f"b ob:{BOB_HASH}\n", "etc/users:2: the user name contains a space"
        )
        self.assertBadLine(
            good + f"alice:{BOB_HASH}\n", "etc/users:2: user 'alice' is listed twice"
        )
        self.assertBadLine(f"alice:{ALICE_HASH[:-1]}\n", "etc/users:1: the hash for 'alice'")

    def test_unreadable_files(self) -> None:
        """
        A missing file or one that is not UTF-8 is a config error naming it.
        """
        missing = temp_path(self)
        with self.assertRaises(ConfigError) as raised:
            load_users(missing)
        self.assertIn(f"{missing}: cannot read users file", str(raised.exception))
        latin = temp_path(self)
        with open(latin, "wb") as f:
            f.write(b"\xe9lise:" + ALICE_HASH.encode())
        with self.assertRaises(ConfigError) as raised:
            load_users(latin)
        self.assertIn("not UTF-8", str(raised.exception))

    def test_hash_password(self) -> None:
        """
        hash_password makes a bcrypt hash of the given cost that checks; it refuses
        empty passwords and ones bcrypt would truncate.
        """
        hashed = hash_password(b"s3cret", rounds=4)
        self.assertTrue(hashed.startswith("$2b$04$"))
        self.assertTrue(bcrypt.checkpw(b"s3cret", hashed.encode()))
        self.assertEqual(parse_users(f"u:{hashed}", "f").names, ["u"])
        self.assertRaises(ValueError, hash_password, b"")
        self.assertRaises(ValueError, hash_password, b"x" * 73)


class CheckerTests(SynchronousTestCase):
    """
    The twisted.cred checker over the users file.
    """

    def setUp(self) -> None:
        self.path = temp_path(self)
        write(self.path, f"alice:{ALICE_HASH}\nbob:{BOB_HASH}\n")
        self.threads = InlineThreads()
        self.clock = Clock()
        self.checker = UsersFileChecker(self.path, self.threads, now=self.clock.seconds)

    def check(self, user: bytes, password: bytes) -> Deferred[Any]:
        return self.checker.requestAvatarId(UsernamePassword(user, password))

    def test_right_password(self) -> None:
        """
        The right password gives the user name as the avatar id.
        """
        self.assertEqual(self.successResultOf(self.check(b"alice", b"wonderland")), b"alice")

    def test_wrong_password_and_unknown_user_cost_the_same(self) -> None:
        """
        A wrong password and an unknown user both fail after exactly one bcrypt
        check in a thread, the unknown user's against a hash of the same cost.
        """
        self.failureResultOf(self.check(b"alice", b"wrong"), UnauthorizedLogin)
        self.assertEqual(self.threads.calls, 1)
        self.failureResultOf(self.check(b"mallory", b"wonderland"), UnauthorizedLogin)
        self.assertEqual(self.threads.calls, 2)
        self.assertEqual(self.checker.table.dummy_hash[:7], ALICE_HASH[:7].encode())

    def test_bcrypt_runs_in_the_thread_runner(self) -> None:
        """
        No password is checked until the thread runner runs the check.
        """
        held = HeldThreads()
        checker = UsersFileChecker(self.path, held, now=self.clock.seconds)
        d = checker.requestAvatarId(UsernamePassword(b"alice", b"wonderland"))
        self.assertNoResult(d)
        self.assertEqual(len(held.pending), 1)
        held.run_all()
        self.assertEqual(self.successResultOf(d), b"alice")

    def test_success_is_remembered_failure_is_not(self) -> None:
        """
        Repeating right credentials skips bcrypt; wrong ones always pay for it.
        """
        self.successResultOf(self.check(b"alice", b"wonderland"))
        self.successResultOf(self.check(b"alice", b"wonderland"))
        self.assertEqual(self.threads.calls, 1)
        for _ in range(2):
            self.failureResultOf(self.check(b"alice", b"wonderlanD"), UnauthorizedLogin)
        self.assertEqual(self.threads.calls, 3)

    def test_overlong_password_fails(self) -> None:
        """
        A password past bcrypt's 72 bytes fails, even if its first 72 bytes match.
        """
        path = temp_path(self)
        long_password = b"p" * 72
        write(path, f"carol:{bcrypt.hashpw(long_password, bcrypt.gensalt(4)).decode()}\n")
        checker = UsersFileChecker(path, self.threads, now=self.clock.seconds)
        good = checker.requestAvatarId(UsernamePassword(b"carol", long_password))
        self.assertEqual(self.successResultOf(good), b"carol")
        longer = checker.requestAvatarId(UsernamePassword(b"carol", long_password + b"x"))
        self.failureResultOf(longer, UnauthorizedLogin)

    def test_reload_when_the_file_changes(self) -> None:
        """
        A changed file is read again, but not before a second has passed since
        the last look; remembered logins are forgotten then.
        """
        self.successResultOf(self.check(b"alice", b"wonderland"))
        carol = bcrypt.hashpw(b"carol-pw", bcrypt.gensalt(4)).decode()
        write(self.path, f"carol:{carol}\n")
        self.clock.advance(0.5)
        self.successResultOf(self.check(b"alice", b"wonderland"))
        self.failureResultOf(self.check(b"carol", b"carol-pw"), UnauthorizedLogin)
        self.clock.advance(0.5)
        with capturedLogs() as events:
            self.assertEqual(self.successResultOf(self.check(b"carol", b"carol-pw")), b"carol")
        self.failureResultOf(self.check(b"alice", b"wonderland"), UnauthorizedLogin)
        self.assertIn("reloaded: 1 users", " ".join(formatEvent(e) for e in events))

    def test_same_size_rewrite_is_noticed(self) -> None:
        """
        A rewrite of the same size is noticed by its modification time.
        """
        write(self.path, f"alice:{BOB_HASH}\nbob:{ALICE_HASH}\n")
        status = os.stat(self.path)
        os.utime(self.path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.check(b"alice", b"builder")), b"alice")

    def test_bad_reload_keeps_previous_users(self) -> None:
        """
        A file that became malformed or vanished is logged; the old users stay.
        """
        write(self.path, "alice:not-a-hash-at-all\n")
        self.clock.advance(1)
        with capturedLogs() as events:
            self.assertEqual(self.successResultOf(self.check(b"alice", b"wonderland")), b"alice")
        [error] = [e for e in events if e["log_level"].name == "error"]
        self.assertIn(f"{self.path}:1: the hash for 'alice'", formatEvent(error))
        os.remove(self.path)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.check(b"bob", b"builder")), b"bob")


class ParseBasicTests(SynchronousTestCase):
    """
    The Authorization header is parsed strictly.
    """

    def test_valid(self) -> None:
        """
        Any case of the scheme; the password keeps its colons and may be empty.
        """
        self.assertEqual(parse_basic(basic("alice", "a:b").encode()), (b"alice", b"a:b"))
        self.assertEqual(parse_basic(b"bAsIc " + base64.b64encode(b"u:")), (b"u", b""))
        self.assertEqual(
            parse_basic(b"Basic " + base64.b64encode("żółw:ü".encode())),
            ("żółw".encode(), "ü".encode()),
        )

    def test_invalid(self) -> None:
        """
        Other schemes, empty, non-base64, unpadded, non-UTF-8, colon-less or
        name-less credentials are refused.
        """
        for value, reason in [
            (b"Bearer abc", "not Basic"),
            (b"Basic", "empty"),
            (b"Basic ", "empty"),
            (b"Basic  " + base64.b64encode(b"a:b"), "not base64"),
            (b"Basic !!!!", "not base64"),
            (b"Basic YTpiYw", "not base64"),
            (b"Basic " + base64.b64encode(b"\xff:pw"), "not UTF-8"),
            (b"Basic " + base64.b64encode(b"alice"), "no ':'"),
            (b"Basic " + base64.b64encode(b":pw"), "empty user name"),
        ]:
            with self.assertRaises(ValueError, msg=value) as raised:
                parse_basic(value)
            self.assertIn(reason, str(raised.exception), value)


class RecordingFormat:
    """
    The HTTPJSON format, remembering each request it turned into an event.
    """

    def __init__(self) -> None:
        self.requests: list[IncomingRequest] = []

    def build(self, request: IncomingRequest) -> bytes:
        self.requests.append(request)
        return httpjson.build(request)

    def parse(self, payload: bytes, document: object = NOT_PARSED) -> Reply:
        return httpjson.parse(payload, document)


class GuardedRouteTests(SynchronousTestCase):
    """
    Routes behind basic auth, through the real gateway and Site.
    """

    def setUp(self) -> None:
        self.users = temp_path(self)
        write(self.users, f"alice:{ALICE_HASH}\n")
        self.events: list[Any] = []

        def echo(event: Any, context: FakeContext) -> Any:
            self.events.append(event)
            return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "hi"}

        self.threads = InlineThreads()
        self.gw = FakeAWSGateway(
            f"""
[auth]
realm = test realm
users_file = {self.users}

[route:/lambda/]

[route:/open/]
auth = none
""",
            {"fn": echo},
            run_in_thread=self.threads,
        )

    def get(self, url: str, **headers: str) -> Any:
        d = self.gw.client.get(url, headers=headers)
        self.gw.flush()
        return self.successResultOf(d)

    def test_no_credentials_is_401_with_challenge(self) -> None:
        """
        Without credentials: 401, a JSON error, the Basic challenge, no invoke.
        """
        response = self.get("http://gw/lambda/fn")
        self.assertEqual(response.code, 401)
        self.assertEqual(
            response.headers.getRawHeaders("www-authenticate"),
            ['Basic realm="test realm", charset="UTF-8"'],
        )
        self.assertIn(b'"request_id"', self.successResultOf(response.content()))
        self.assertEqual(self.gw.lambda_api.calls, [])

    def test_login_passes_the_user_to_the_function(self) -> None:
        """
        With the right password the function runs and sees x-authenticated-user,
        whatever the client sent under that name.
        """
        response = self.get(
            "http://gw/lambda/fn",
            Authorization=basic("alice", "wonderland"),
            **{"X-Authenticated-User": "root"},
        )
        self.assertEqual(response.code, 200)
        [event] = self.events
        self.assertEqual(event["meta"]["headers"]["x-authenticated-user"], ["alice"])

    def test_user_reaches_the_event_format(self) -> None:
        """
        The event format gets the user name in IncomingRequest.user.
        """
        recording = RecordingFormat()
        [route, _] = self.gw.config.routes
        services = PolicyServices(
            Clock(), authenticator=basic_authenticator(self.users, "r", InlineThreads())
        )
        binding = Binding(
            route,
            InProcessInvoker({"fn": lambda event, context: {}}),
            recording,
            build_chain(route, self.gw.config, services),
        )
        client: Any = StubTreq(GatewayResource([binding], Clock()))
        d = client.get(
            "http://gw/lambda/fn", headers={"Authorization": basic("alice", "wonderland")}
        )
        client.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        [request] = recording.requests
        self.assertEqual(request.user, "alice")

    def test_open_route_needs_no_login_and_drops_the_header(self) -> None:
        """
        An ``auth = none`` route serves anyone; a client's x-authenticated-user is dropped.
        """
        response = self.get("http://gw/open/fn", **{"X-Authenticated-User": "root"})
        self.assertEqual(response.code, 200)
        self.assertNotIn("x-authenticated-user", self.events[0]["meta"]["headers"])

    def test_bad_credentials_are_401(self) -> None:
        """
        Wrong password, unknown user, other scheme, garbage: 401, no invoke.
        """
        for value in [
            basic("alice", "wrong"),
            basic("nobody", "wonderland"),
            basic("ALICE", "wonderland"),
            "Bearer abc",
            "Basic",
            "Basic ???",
            "Basic " + base64.b64encode(b"alice").decode(),
        ]:
            response = self.get("http://gw/lambda/fn", Authorization=value)
            self.assertEqual(response.code, 401, value)
            self.assertTrue(response.headers.getRawHeaders("www-authenticate"), value)
        self.assertEqual(self.gw.lambda_api.calls, [])

    def test_two_authorization_headers_are_401(self) -> None:
        """
        Two Authorization headers are refused even when one is right.
        """
        d = self.gw.client.get(
            "http://gw/lambda/fn",
            headers={"Authorization": [basic("alice", "wonderland"), basic("alice", "x")]},
        )
        self.gw.flush()
        self.assertEqual(self.successResultOf(d).code, 401)

    def test_names_are_not_revealed_without_login(self) -> None:
        """
        Without a login, an invalid function name is a 401 like any other.
        """
        self.assertEqual(self.get("http://gw/lambda/no.such").code, 401)
        self.assertEqual(self.get("http://gw/lambda/fn").code, 401)

    def test_secrets_never_reach_the_log(self) -> None:
        """
        Neither the password nor the Authorization value appears in any log event.
        """
        secrets = ["wonderland", "hunter2-not-logged"]
        headers = [basic("alice", "wonderland"), basic("alice", "hunter2-not-logged")]
        with capturedLogs() as events:
            for value in headers:
                self.get("http://gw/lambda/fn", Authorization=value)
        self.assertTrue(events)
        text = "\n".join(formatEvent(e) + repr(e) for e in events)
        for secret in secrets + [h.split()[1] for h in headers]:
            self.assertNotIn(secret, text)


class AuthenticatorAssemblyTests(SynchronousTestCase):
    """
    The guard is built from [auth] and fails early on a bad users file.
    """

    def test_bad_users_file_is_a_config_error(self) -> None:
        """
        A gateway whose users file is malformed is not built.
        """
        users = temp_path(self)
        write(users, "alice\n")
        with self.assertRaises(ConfigError) as raised:
            basic_authenticator(users, "r", InlineThreads())
        self.assertIn(f"{users}:1:", str(raised.exception))
