"""
The JSON access log: the real gateway writes one line per request to a real
file, opened when its service starts.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.observe.accesslog import AccessLog, UTCStamps
from twisted_lambdagw.testing import FakeContext, RawResponse

from .gateway_fixtures import FakeAWSGateway
from .process_fixtures import temp_dir

FIELDS = [
    "time", "request_id", "remote", "method", "path", "route", "function", "qualifier",
    "status", "bytes_out", "duration_ms", "invoke_ms", "ttfb_ms", "aws_request_id",
    "executed_version", "function_error", "user", "authorizer", "outcome", "limited",
    "stream_outcome", "error", "error_code",
]  # fmt: skip


def reply(body: str) -> dict[str, Any]:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": body}


class AccessLogTests(SynchronousTestCase):
    """
    One JSON object per request, with what happened to it.
    """

    def setUp(self) -> None:
        self.dir = temp_dir(self)
        self.path = self.dir / "access.log"
        self.pending: Deferred[Any] = Deferred()

        def slow(event: Any, context: FakeContext) -> Any:
            return self.pending

        def broken(event: Any, context: FakeContext) -> Any:
            raise ValueError("no")

        self.gw = FakeAWSGateway(
            f"[gateway]\naccess_log = {self.path}\n\n[route:/lambda/]\nqualifier = live\n"
            "timeout = 10s\n",
            {
                "hello": lambda event, context: reply("hi there"),
                "slow": slow,
                "broken": broken,
                "busy": lambda event, context: RawResponse.error(
                    429, "TooManyRequestsException", "Rate exceeded"
                ),
            },
        )
        self.service = self.gw.gateway.service

    def get(self, url: str, **kwargs: Any) -> Any:
        d = self.gw.client.get(url, **kwargs)
        self.gw.flush()
        return d

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    def test_served_request(self) -> None:
        """
        Every field, in order, for a request that invoked a function.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode) & 0o007, 0)  # not world-readable
        response = self.successResultOf(
            self.get("http://gw/lambda/hello/a?token=secret", headers={"X-Request-ID": ["r-1"]})
        )
        self.assertEqual(response.code, 200)
        [record] = self.records()
        self.assertEqual(list(record), FIELDS)
        aws_request_id = record.pop("aws_request_id")
        self.assertEqual(len(aws_request_id), 36)
        self.assertEqual(
            record,
            {
                "time": "2023-11-14T22:13:20.000Z",
                "request_id": "r-1",
                "remote": "127.0.0.1",
                "method": "GET",
                "path": "/lambda/hello/a",
                "route": "/lambda/",
                "function": "hello",
                "qualifier": "live",
                "status": 200,
                "bytes_out": 8,
                "duration_ms": 0.0,
                "invoke_ms": 0.0,
                "ttfb_ms": 0.0,
                "executed_version": "$LATEST",
                "function_error": None,
                "user": None,
                "authorizer": None,
                "outcome": "served",
                "limited": None,
                "stream_outcome": None,
                "error": None,
                "error_code": None,
            },
        )

    def test_failures(self) -> None:
        """
        404s, function errors, Lambda's refusals and timeouts say what went wrong.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.get("http://gw/nowhere")
        self.get("http://gw/lambda/broken")
        self.get("http://gw/lambda/busy")
        timing_out = self.get("http://gw/lambda/slow")
        self.gw.clock.advance(10)
        self.gw.flush()
        self.successResultOf(timing_out)
        summary = [
            (r["path"], r["status"], r["outcome"], r["error"], r["error_code"], r["function_error"])
            for r in self.records()
        ]
        self.assertEqual(
            summary,
            [
                ("/nowhere", 404, "error", "no route for this path", None, None),
                ("/lambda/broken", 502, "error", "function error", None, "Unhandled"),
                (
                    "/lambda/busy",
                    503,
                    "error",
                    "function throttled",
                    "TooManyRequestsException",
                    None,
                ),
                ("/lambda/slow", 504, "error", "function timed out", "InvokeTimeout", None),
            ],
        )
        timed_out = self.records()[-1]
        self.assertEqual((timed_out["duration_ms"], timed_out["invoke_ms"]), (10000.0, 10000.0))
        self.assertIsNone(self.records()[0]["invoke_ms"])

    def test_client_gone(self) -> None:
        """
        A client that leaves is logged with status 0 and outcome client_gone.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        d = self.get("http://gw/lambda/slow")
        d.cancel()
        self.gw.flush()
        self.failureResultOf(d)
        [record] = self.records()
        self.assertEqual((record["status"], record["outcome"]), (0, "client_gone"))

    def test_only_while_running(self) -> None:
        """
        Nothing is written before the service starts or after it stops, and stopping closes it.
        """
        self.get("http://gw/lambda/hello")
        self.assertFalse(self.path.exists())
        self.service.startService()
        self.get("http://gw/lambda/hello")
        self.successResultOf(self.service.stopService())
        self.get("http://gw/lambda/hello")
        self.assertEqual(len(self.records()), 1)

    def test_appends(self) -> None:
        """
        An existing file is appended to, never truncated.
        """
        self.path.write_text('{"earlier": true}\n')
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.get("http://gw/lambda/hello")
        self.assertEqual(len(self.records()), 2)
        self.assertEqual(self.records()[0], {"earlier": True})

    def test_reopen_after_rotation(self) -> None:
        """
        After the file is moved away, reopen() starts a new file at the configured path.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.get("http://gw/lambda/hello")
        rotated = self.dir / "access.log.1"
        self.path.rename(rotated)
        access_log = self.gw.gateway.access_log
        assert access_log is not None
        access_log.reopen()
        self.get("http://gw/lambda/hello")
        self.assertEqual(len(rotated.read_text().splitlines()), 1)
        self.assertEqual(len(self.records()), 1)

    def test_reopen_failure_keeps_the_old_file(self) -> None:
        """
        If the path cannot be opened again, lines keep going to the old file.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.path.rename(self.dir / "moved.log")
        self.path.mkdir()  # a directory cannot be opened for writing
        access_log = self.gw.gateway.access_log
        assert access_log is not None
        with capturedLogs() as events:
            access_log.reopen()
        [error] = [e for e in events if e["log_level"].name == "error"]
        self.assertIn("Is a directory", error["error"])
        self.get("http://gw/lambda/hello")
        self.assertEqual(len((self.dir / "moved.log").read_text().splitlines()), 1)

    def test_cannot_open(self) -> None:
        """
        A path that cannot be opened is a ConfigError naming the config key.
        """
        access_log = AccessLog(
            str(self.dir / "missing" / "a.log"), source="gw.ini: [gateway] access_log"
        )
        error = self.assertRaises(ConfigError, access_log.startService)
        self.assertEqual(
            str(error),
            f"gw.ini: [gateway] access_log: cannot open '{self.dir}/missing/a.log':"
            " No such file or directory",
        )

    def test_opener(self) -> None:
        """
        The target is opened through the injected opener, once.
        """
        opened: list[str] = []
        path = Path(self.dir / "b.log")

        def opener(target: str) -> int:
            opened.append(target)
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

        access_log = AccessLog("-", opener=opener)
        access_log.privilegedStartService()
        access_log.startService()
        access_log.reopen()  # stdout is never reopened
        access_log.stopService()
        self.assertEqual(opened, ["-"])


class UTCStampsTests(SynchronousTestCase):
    """
    ISO 8601 UTC with milliseconds.
    """

    def test_format(self) -> None:
        """
        Milliseconds are truncated; the seconds part follows the clock across seconds.
        """
        stamp = UTCStamps()
        self.assertEqual(stamp(1_700_000_000.1234), "2023-11-14T22:13:20.123Z")
        self.assertEqual(stamp(1_700_000_000.9999), "2023-11-14T22:13:20.999Z")
        self.assertEqual(stamp(1_700_000_061.5), "2023-11-14T22:14:21.500Z")
        self.assertEqual(stamp(0), "1970-01-01T00:00:00.000Z")
