"""
LocalInvoker with real worker processes: awslambdaric and a custom runtime.

These run on the real reactor and start real processes on loopback; each
test groups the checks that can share one warm worker, to stay fast.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import ILogObserver, LogEvent, LogLevel, capturedLogs, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import provider

from twisted_lambdagw.core.config import LocalConfig
from twisted_lambdagw.core.errors import InvokeFailed, InvokeTimeout, NotFound, Throttled
from twisted_lambdagw.invokers.base import InvocationType, InvokeCall, Invoker, InvokeResult
from twisted_lambdagw.invokers.local import LocalInvoker, LocalReactor

FUNCTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functions")
GATEWAY_ENVIRON = {
    "PATH": os.environ.get("PATH", os.defpath),
    "AWS_ACCESS_KEY_ID": "AKIAGATEWAYOWNKEY",
    "AWS_SECRET_ACCESS_KEY": "gateway-secret",
}


def real_reactor() -> LocalReactor:
    from twisted.internet import reactor

    return cast(LocalReactor, reactor)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LocalInvokerTests(TestCase):
    def make_invoker(
        self, functions_dir: str = FUNCTIONS, init_timeout: float = 10.0, **options: Any
    ) -> LocalInvoker:
        config = LocalConfig(functions_dir=functions_dir, **options)
        invoker = LocalInvoker(
            real_reactor(), config, environ=GATEWAY_ENVIRON, init_timeout=init_timeout
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(invoker.stop()))
        return invoker

    def call(
        self,
        invoker: Invoker,
        event: object,
        function: str = "probe",
        timeout: float = 30.0,
        qualifier: str | None = None,
        invocation_type: InvocationType = "RequestResponse",
    ) -> Deferred[InvokeResult]:
        call = InvokeCall(
            function,
            json.dumps(event).encode(),
            qualifier=qualifier,
            invocation_type=invocation_type,
            request_id="gw-request-1",
            timeout=timeout,
        )
        return Deferred.fromCoroutine(invoker.invoke(call))

    def output_line(self, line: str) -> Deferred[None]:
        """
        Fires when a worker prints ``line``: the handler is running.
        """
        seen: Deferred[None] = Deferred()

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("line") == line and not seen.called:
                globalLogPublisher.removeObserver(observe)
                seen.callback(None)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(lambda: globalLogPublisher.removeObserver(observe))
        return seen

    def functions_dir(self, **files: str) -> str:
        path = tempfile.mkdtemp(prefix="lambdagw-functions-")
        self.addCleanup(shutil.rmtree, path, True)
        for name, text in files.items():
            with open(os.path.join(path, name + ".py"), "w") as f:
                f.write(text)
        return path

    async def test_round_trip_warm_reuse_context_and_env(self) -> None:
        """The event goes in and the result comes out; the worker stays warm."""
        invoker = self.make_invoker(env=(("PROBE_SETTING", "from-config"),), memory_size=256)
        first = await self.call(invoker, {"hello": "world"})
        second = await self.call(invoker, {"hello": "again"})
        one, two = json.loads(first.payload), json.loads(second.payload)

        self.assertEqual((first.status, first.function_error), (200, None))
        self.assertEqual(first.executed_version, "$LATEST")
        self.assertEqual(one["event"], {"hello": "world"})
        self.assertEqual(two["event"], {"hello": "again"})
        self.assertEqual((one["calls"], two["calls"]), (1, 2))
        self.assertEqual(one["pid"], two["pid"])

        context = one["context"]
        self.assertEqual(context["function_name"], "probe")
        self.assertEqual(context["function_version"], "$LATEST")
        self.assertEqual(context["memory_limit_in_mb"], "256")
        self.assertEqual(context["aws_request_id"], first.aws_request_id)
        self.assertNotEqual(first.aws_request_id, second.aws_request_id)
        self.assertEqual(
            context["invoked_function_arn"], "arn:aws:lambda:us-east-1:000000000000:function:probe"
        )
        self.assertEqual(context["log_group_name"], "/aws/lambda/probe")
        self.assertIn("[$LATEST]", context["log_stream_name"])
        self.assertTrue(0 < context["remaining_ms"] <= 30_000, context["remaining_ms"])

        env = one["env"]
        self.assertEqual(env["AWS_LAMBDA_FUNCTION_NAME"], "probe")
        self.assertEqual(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST")
        self.assertEqual(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256")
        self.assertEqual(env["AWS_REGION"], "us-east-1")
        self.assertEqual(env["AWS_DEFAULT_REGION"], "us-east-1")
        self.assertEqual(env["LAMBDA_TASK_ROOT"], FUNCTIONS)
        self.assertEqual(one["cwd"], FUNCTIONS)
        self.assertEqual(env["_HANDLER"], "probe.handler")
        self.assertEqual(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/probe")
        self.assertEqual(env["AWS_LAMBDA_LOG_STREAM_NAME"], context["log_stream_name"])
        self.assertTrue(env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:"))
        self.assertTrue(env["_X_AMZN_TRACE_ID"].startswith("Root=1-"))
        self.assertEqual(env["PROBE_SETTING"], "from-config")
        self.assertIsNone(env["AWS_ACCESS_KEY_ID"])
        self.assertIsNone(env["AWS_SECRET_ACCESS_KEY"])

    async def test_qualifier(self) -> None:
        """A qualifier is the function's version and the ARN's suffix, in its own workers."""
        invoker = self.make_invoker()
        result = await self.call(invoker, {}, qualifier="live")
        document = json.loads(result.payload)
        self.assertEqual(result.executed_version, "live")
        self.assertEqual(document["env"]["AWS_LAMBDA_FUNCTION_VERSION"], "live")
        self.assertTrue(document["context"]["invoked_function_arn"].endswith(":probe:live"))

    async def test_function_error(self) -> None:
        """An exception is a function error with the runtime's own document, and logged."""
        invoker = self.make_invoker()
        warm = json.loads((await self.call(invoker, {})).payload)
        with capturedLogs() as events:
            result = await self.call(invoker, {"action": "raise", "message": "no such note"})
        self.assertEqual((result.status, result.function_error), (200, "Unhandled"))
        error = json.loads(result.payload)
        self.assertEqual(error["errorType"], "ProbeError")
        self.assertEqual(error["errorMessage"], "no such note")
        self.assertEqual(error["requestId"], result.aws_request_id)
        self.assertIn("probe.py", "".join(error["stackTrace"]))
        lines = [e for e in events if "[ERROR] ProbeError: no such note" in e.get("line", "")]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["request_id"], "gw-request-1")
        self.assertEqual(lines[0]["function"], "probe")
        after = json.loads((await self.call(invoker, {})).payload)
        self.assertEqual(after["pid"], warm["pid"])

    async def test_output_lines_are_logged_with_the_request(self) -> None:
        """What a handler prints reaches the log tagged with function and request id."""
        invoker = self.make_invoker()
        with capturedLogs() as events:
            result = await self.call(invoker, {"action": "print", "text": "hello {braces}"})
        lines = [e for e in events if e.get("line") == "hello {braces}"]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["request_id"], "gw-request-1")
        self.assertEqual(lines[0]["aws_request_id"], result.aws_request_id)
        self.assertEqual(lines[0]["stream"], "stdout")

    async def test_timeout_then_recovery(self) -> None:
        """Past the deadline the worker is killed (504); the next call gets a new one."""
        invoker = self.make_invoker()
        before = json.loads((await self.call(invoker, {})).payload)
        with self.assertRaises(InvokeTimeout):
            await self.call(invoker, {"action": "sleep", "seconds": 30}, timeout=0.5)
        after = json.loads((await self.call(invoker, {})).payload)
        self.assertNotEqual(after["pid"], before["pid"])
        self.assertEqual(after["calls"], 1)
        self.assertFalse(pid_alive(before["pid"]))

    async def test_exit_then_recovery(self) -> None:
        """A runtime that exits mid-invoke is a 502; the next call gets a new worker."""
        invoker = self.make_invoker()
        before = json.loads((await self.call(invoker, {})).payload)
        with self.assertRaises(InvokeFailed) as caught:
            await self.call(invoker, {"action": "exit"})
        self.assertIn("exit status 3", caught.exception.detail)
        after = json.loads((await self.call(invoker, {})).payload)
        self.assertNotEqual(after["pid"], before["pid"])

    async def test_queue_full(self) -> None:
        """With every worker busy and the queue full, a call is throttled (503)."""
        invoker = self.make_invoker(concurrency=1, queue_size=1)
        running = self.call(invoker, {"n": 1})
        queued = self.call(invoker, {"n": 2})
        with self.assertRaises(Throttled):
            await self.call(invoker, {"n": 3})
        one, two = json.loads((await running).payload), json.loads((await queued).payload)
        self.assertEqual((one["calls"], two["calls"]), (1, 2))

    async def test_file_change(self) -> None:
        """A changed function file is picked up by the next call, in a new worker."""
        directory = self.functions_dir(
            change="import os\ndef handler(event, context):\n    return [1, os.getpid()]\n"
        )
        invoker = self.make_invoker(directory)
        version, pid = json.loads((await self.call(invoker, {}, "change")).payload)
        self.assertEqual(version, 1)
        with open(os.path.join(directory, "change.py"), "w") as f:
            f.write("import os\ndef handler(event, context):\n    return [22, os.getpid()]\n")
        version, new_pid = json.loads((await self.call(invoker, {}, "change")).payload)
        self.assertEqual(version, 22)
        self.assertNotEqual(new_pid, pid)

    async def test_init_error(self) -> None:
        """A module that fails at import is a 502 with the init error logged; a fix works."""
        directory = self.functions_dir(broken="raise RuntimeError('missing setting')\n")
        invoker = self.make_invoker(directory)
        with capturedLogs() as events, self.assertRaises(InvokeFailed) as caught:
            await self.call(invoker, {}, "broken")
        self.assertIn("RuntimeError", caught.exception.detail)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["error_type"], "RuntimeError")
        self.assertEqual(errors[0]["error_message"], "missing setting")
        with open(os.path.join(directory, "broken.py"), "w") as f:
            f.write("def handler(event, context):\n    return 'fixed'\n")
        result = await self.call(invoker, {}, "broken")
        self.assertEqual(result.payload, b'"fixed"')

    async def test_deadline_during_cold_start(self) -> None:
        """A deadline passed while the runtime starts is a 504; the worker starts anyway."""
        directory = self.functions_dir(
            slow="import os, time\ntime.sleep(1)\nCALLS = []\n"
            "def handler(event, context):\n    CALLS.append(event)\n"
            "    return [os.getpid(), len(CALLS)]\n"
        )
        invoker = self.make_invoker(directory)
        with capturedLogs() as events:
            with self.assertRaises(InvokeTimeout) as caught:
                await self.call(invoker, {}, "slow", timeout=0.2)
            self.assertIn("still starting", caught.exception.detail)
            pid, calls = json.loads((await self.call(invoker, {}, "slow")).payload)
        self.assertEqual(calls, 1)
        started = [e["pid"] for e in events if "started worker" in e.get("log_format", "")]
        self.assertEqual(started, [pid])

    async def test_init_timeout(self) -> None:
        """A runtime that never asks for its first event is killed: a 502, logged."""
        directory = self.functions_dir(stuck="import time\ntime.sleep(60)\n")
        invoker = self.make_invoker(directory, init_timeout=0.3)
        with capturedLogs() as events, self.assertRaises(InvokeFailed) as caught:
            await self.call(invoker, {}, "stuck")
        self.assertIn("did not start within", caught.exception.detail)
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.error]), 1)

    async def test_cancel_in_flight(self) -> None:
        """A cancelled call runs to its end on its worker; nothing is logged as an error."""
        invoker = self.make_invoker(concurrency=1)
        warm = json.loads((await self.call(invoker, {})).payload)
        with capturedLogs() as events:
            sleeping = self.output_line("sleeping 0.2")
            abandoned = self.call(invoker, {"action": "sleep", "seconds": 0.2})
            await sleeping
            abandoned.cancel()
            with self.assertRaises(CancelledError):
                await abandoned
            after = json.loads((await self.call(invoker, {})).payload)
        self.assertEqual(after["pid"], warm["pid"])
        self.assertEqual(after["calls"], 3)
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.warn], [])

    async def test_cancel_before_delivery(self) -> None:
        """A call cancelled before the runtime took it never runs; the worker is kept."""
        invoker = self.make_invoker(concurrency=1)
        abandoned = self.call(invoker, {"action": "raise"})
        abandoned.cancel()
        with self.assertRaises(CancelledError):
            await abandoned
        result = json.loads((await self.call(invoker, {})).payload)
        self.assertEqual(result["calls"], 1)
        pool = invoker.pool("probe")
        assert pool is not None
        self.assertEqual(pool.size, 1)

    async def test_event_invocation(self) -> None:
        """An Event call is accepted with 202 and runs in the background."""
        invoker = self.make_invoker(concurrency=1)
        accepted = await self.call(invoker, {}, invocation_type="Event")
        self.assertEqual((accepted.status, accepted.payload), (202, b""))
        result = json.loads((await self.call(invoker, {})).payload)
        self.assertEqual(result["calls"], 2)

    async def test_custom_runtime(self) -> None:
        """NAME/bootstrap runs as a custom runtime against the same Runtime API."""
        invoker = self.make_invoker()
        first = await self.call(invoker, {"n": 1}, "custom")
        second = await self.call(invoker, {"n": 2}, "custom")
        one, two = json.loads(first.payload), json.loads(second.payload)
        self.assertEqual(one["event"], {"n": 1})
        self.assertEqual((one["calls"], two["calls"]), (1, 2))
        self.assertEqual(one["pid"], two["pid"])
        self.assertEqual(one["function_name"], "custom")
        self.assertEqual(one["handler"], "bootstrap")
        self.assertEqual(one["task_root"], os.path.join(FUNCTIONS, "custom"))
        self.assertEqual(one["arn"], "arn:aws:lambda:us-east-1:000000000000:function:custom")
        self.assertTrue(int(one["deadline_ms"]) > 0)
        failed = await self.call(invoker, {"fail": True}, "custom")
        self.assertEqual(failed.function_error, "Unhandled")
        self.assertEqual(json.loads(failed.payload)["errorType"], "CustomError")

    async def test_not_found(self) -> None:
        """A missing function, or a name that is not a function name, is a 404."""
        invoker = self.make_invoker()
        for name in ("nosuch", "../functions/probe", "probe.py", "", "a" * 65):
            with self.assertRaises(NotFound):
                await self.call(invoker, {}, name)

    async def test_stop(self) -> None:
        """stop() ends every worker process and later calls fail."""
        invoker = self.make_invoker()
        probe = json.loads((await self.call(invoker, {})).payload)
        custom = json.loads((await self.call(invoker, {}, "custom")).payload)
        await invoker.stop()
        self.assertFalse(pid_alive(probe["pid"]))
        self.assertFalse(pid_alive(custom["pid"]))
        with self.assertRaises(InvokeFailed):
            await self.call(invoker, {})
