"""
The JSON-lines log observer, and the promise that no secret reaches any log:
requests carrying credentials go through the real gateway while every log
event, the JSON log and the access log are captured and searched.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    capturedLogs,
    eventAsText,
    formatEvent,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_lambdagw.observe.logs import JSONLinesObserver, flat_event, json_observer
from twisted_lambdagw.testing import FakeContext, RawResponse

from .auth_fixtures import ALICE_HASH, InlineThreads
from .auth_fixtures import basic as basic_value
from .gateway_fixtures import BASE_CONFIG, SECRET_KEY, FakeAWSGateway
from .process_fixtures import temp_dir


class JSONLinesObserverTests(SynchronousTestCase):
    """
    One flat JSON object per event.
    """

    def observe(self, emit: Any) -> list[dict[str, Any]]:
        stream = io.StringIO()
        observer = JSONLinesObserver(stream)
        log = Logger(namespace="test.ns", observer=observer)
        emit(log)
        lines = stream.getvalue().splitlines()
        return [json.loads(line) for line in lines]

    def test_fields(self) -> None:
        """
        time, level, namespace, message first; then the event's own simple fields.
        """
        [record] = self.observe(
            lambda log: log.warn(
                "function {function} failed after {ms}ms",
                function="hello",
                ms=12.5,
                attempts=2,
                cold=True,
                version=None,
            )
        )
        self.assertEqual(list(record)[:4], ["time", "level", "namespace", "message"])
        self.assertRegex(record.pop("time"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(
            record,
            {
                "level": "warn",
                "namespace": "test.ns",
                "message": "function hello failed after 12.5ms",
                "function": "hello",
                "ms": 12.5,
                "attempts": 2,
                "cold": True,
                "version": None,
            },
        )

    def test_structured_and_internal_fields_are_left_out(self) -> None:
        """
        Lists, dicts, objects, non-finite floats and log_* fields are not written.
        """
        [record] = self.observe(
            lambda log: log.info(
                "x", stack=["a"], doc={"a": 1}, thing=object(), nan=float("nan"), n=1
            )
        )
        self.assertEqual(set(record), {"time", "level", "namespace", "message", "n"})

    def test_reserved_names_are_prefixed(self) -> None:
        """
        An event field named like one of the first four is kept under field_NAME.
        """
        [record] = self.observe(lambda log: log.info("said {message}", message="hi", time=3))
        self.assertEqual(record["message"], "said hi")
        self.assertEqual((record["field_message"], record["field_time"]), ("hi", 3))
        self.assertNotEqual(record["time"], 3)

    def test_failure_traceback(self) -> None:
        """
        A logged failure adds its traceback.
        """
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            failure = Failure()
        [record] = self.observe(lambda log: log.failure("it broke", failure, request_id="r1"))
        self.assertEqual((record["level"], record["message"]), ("critical", "it broke"))
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertEqual(record["request_id"], "r1")

    def test_bad_format_does_not_raise(self) -> None:
        """
        An event whose format cannot be filled in is still written.
        """
        record = flat_event(
            {"log_format": "{missing}", "log_level": LogLevel.error, "log_time": 0.0}
        )
        self.assertEqual(record["time"], "1970-01-01T00:00:00.000Z")
        self.assertIn("Unable to format event", record["message"])

    def test_factory(self) -> None:
        """
        json_observer() takes no arguments and returns an ILogObserver on the real stdout.
        """
        observer = json_observer()
        self.assertTrue(verifyObject(ILogObserver, observer))
        assert isinstance(observer, JSONLinesObserver)
        self.assertIs(observer._stream, sys.__stdout__)


PASSWORD = "correct-horse-battery-staple"
BEARER = "bearer-token-0123456789abcdef"
SESSION_TOKEN = "session-token-for-tests-9876543210"
ROUTE_SECRET = "route-level-secret-key-0123456789"


class NoSecretsInLogsTests(SynchronousTestCase):
    """
    Authorization headers, AWS secret keys and session tokens never reach a log.
    """

    def test_no_secret_anywhere(self) -> None:
        """
        Successes, function errors, Lambda refusals, timeouts and 404s: no secret in any log.
        """
        directory = temp_dir(self)
        access_path = directory / "access.log"
        users = directory / "users"
        users.write_text(f"alice:{ALICE_HASH}\n")

        def broken(event: Any, context: FakeContext) -> Any:
            raise ValueError("the function failed")

        pending: Deferred[Any] = Deferred()
        gw = FakeAWSGateway(
            f"[gateway]\naccess_log = {access_path}\n\n"
            f"[auth]\nusers_file = {users}\n\n"
            "[route:/lambda/]\ntimeout = 5s\nauth = none\n\n"
            "[route:/secure/]\nauth = basic\n\n"
            f"[route:/other/]\nauth = none\naws_access = AKIDROUTEKEY\n"
            f"aws_secret = {ROUTE_SECRET}\n",
            {
                "hello": lambda event, context: {"ok": True},
                "broken": broken,
                "denied": lambda event, context: RawResponse.error(
                    403, "AccessDeniedException", "not allowed"
                ),
                "slow": lambda event, context: pending,
            },
            base=BASE_CONFIG + f"session_token = {SESSION_TOKEN}\n",
            run_in_thread=InlineThreads(),
        )
        self.assertEqual(gw.config.aws.session_token, SESSION_TOKEN)
        basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        alice = basic_value("alice", "wonderland").split()[1]
        secrets = [
            PASSWORD, basic, BEARER, SECRET_KEY, SESSION_TOKEN, ROUTE_SECRET, "Signature=",
            "wonderland", alice, ALICE_HASH,
        ]  # fmt: skip

        json_stream = io.StringIO()
        json_lines = JSONLinesObserver(json_stream)
        gw.gateway.service.startService()
        with capturedLogs() as events:
            for path, authorization in [
                ("/lambda/hello", f"Basic {basic}"),
                ("/secure/hello", f"Basic {alice}"),
                ("/secure/hello", f"Basic {basic}"),
                ("/secure/broken", f"Basic {alice}"),
                ("/lambda/broken", f"Bearer {BEARER}"),
                ("/lambda/denied", f"Basic {basic}"),
                ("/other/hello", f"Bearer {BEARER}"),
                ("/lambda/bad.name", f"Basic {basic}"),
                (f"/nowhere?password={PASSWORD}", f"Bearer {BEARER}"),
                (f"/lambda/missing?token={BEARER}", f"Bearer {BEARER}"),
            ]:
                d = gw.client.get(
                    f"http://gw{path}",
                    headers={"Authorization": [authorization], "Cookie": [f"s={BEARER}"]},
                )
                gw.flush()
                self.successResultOf(d)
            timing_out = gw.client.get(
                "http://gw/lambda/slow", headers={"Authorization": [f"Basic {basic}"]}
            )
            gw.flush()
            gw.clock.advance(5)
            gw.flush()
            self.assertEqual(self.successResultOf(timing_out).code, 504)
            self.successResultOf(gw.gateway.service.stopService())
            for event in events:
                json_lines(event)

        self.assertGreater(len(events), 5)
        outputs = {
            "access log": access_path.read_text(),
            "JSON log": json_stream.getvalue(),
            "text log": "\n".join(eventAsText(e) for e in events),
            "event fields": "\n".join(repr(e) for e in events),
            "formatted": "\n".join(formatEvent(e) for e in events),
        }
        self.assertEqual(len(outputs["access log"].splitlines()), 11)
        users_seen = [json.loads(line)["user"] for line in outputs["access log"].splitlines()]
        self.assertEqual(users_seen.count("alice"), 2)
        self.assertIn("the function failed", outputs["JSON log"])  # what should be there is
        for where, text in outputs.items():
            for secret in secrets:
                self.assertNotIn(secret, text, f"{secret!r} in the {where}")
        for secret in SECRET_KEY, SESSION_TOKEN, ROUTE_SECRET:
            self.assertNotIn(secret, repr(gw.config))
        # The secrets did travel: the function saw the header, Lambda the token.
        [hello_call, *_] = gw.lambda_api.calls
        self.assertEqual(hello_call.headers["x-amz-security-token"], SESSION_TOKEN)
        self.assertIn(basic, hello_call.body.decode())


class FunctionErrorLogTests(SynchronousTestCase):
    """
    A function's error reaches the JSON log with its stack trace.
    """

    def test_stack_trace_is_text(self) -> None:
        """
        Lambda's list of stack lines is logged as one string, so the JSON log keeps it.
        """

        def broken(event: Any, context: FakeContext) -> Any:
            raise ValueError("bad input")

        gw = FakeAWSGateway("[route:/lambda/]\n", {"broken": broken})
        with capturedLogs() as events:
            d = gw.client.get("http://gw/lambda/broken")
            gw.flush()
        self.assertEqual(self.successResultOf(d).code, 502)
        [event] = [e for e in events if e.get("function") == "broken"]
        record = flat_event(event)
        self.assertEqual(
            (record["level"], record["error_type"], record["error_message"]),
            ("warn", "ValueError", "bad input"),
        )
        self.assertIn('raise ValueError("bad input")', record["stack_trace"])
        self.assertIn("in broken", record["stack_trace"])
