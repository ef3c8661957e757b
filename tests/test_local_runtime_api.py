"""
The Runtime API resource of one worker, driven in memory through StubTreq.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.invokers.local.runtime_api import (
    MAX_RESPONSE_SIZE,
    Invocation,
    Outcome,
    RuntimeAPI,
    WithdrawnError,
)

BASE = "http://127.0.0.1:9001/2018-06-01/runtime"
NEXT = BASE + "/invocation/next"


def invocation(request_id: str = "req-1", payload: bytes = b'{"x": 1}') -> Invocation:
    return Invocation(
        request_id=request_id,
        payload=payload,
        deadline_ms=1_700_000_030_000,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:probe",
        trace_id="Root=1-00000000-000000000000000000000000;Sampled=0",
        gateway_request_id="gw-1",
    )


class RuntimeAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.init_errors: list[tuple[bytes, str | None]] = []
        self.initialized = 0
        self.api = RuntimeAPI(
            on_init_error=lambda body, kind: self.init_errors.append((body, kind)),
            on_initialized=self.count_initialized,
        )
        self.client: Any = StubTreq(self.api)

    def count_initialized(self) -> None:
        self.initialized += 1

    def request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        d = self.client.request(method, url, **kwargs)
        self.client.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(self.client.content(response))
        headers = {
            name.decode(): values[0].decode()
            for name, values in response.headers.getAllRawHeaders()
        }
        return response.code, headers, body

    def deliver(self, request_id: str = "req-1") -> Deferred[Outcome]:
        outcome = self.api.submit(invocation(request_id))
        code, _, _ = self.request("GET", NEXT)
        self.assertEqual(code, 200)
        return outcome

    def test_poll_waits_for_an_event(self) -> None:
        """A poll without an event is held open and answered once one is submitted."""
        d = self.client.get(NEXT)
        self.client.flush()
        self.assertNoResult(d)
        self.api.submit(invocation())
        self.client.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(self.client.content(response)), b'{"x": 1}')

    def test_event_headers(self) -> None:
        """The event comes with Lambda's request id, deadline, ARN and trace headers."""
        self.api.submit(invocation())
        code, headers, body = self.request("GET", NEXT)
        self.assertEqual((code, body), (200, b'{"x": 1}'))
        self.assertEqual(headers["Lambda-Runtime-Aws-Request-Id"], "req-1")
        self.assertEqual(headers["Lambda-Runtime-Deadline-Ms"], "1700000030000")
        self.assertEqual(
            headers["Lambda-Runtime-Invoked-Function-Arn"],
            "arn:aws:lambda:us-east-1:000000000000:function:probe",
        )
        self.assertEqual(
            headers["Lambda-Runtime-Trace-Id"],
            "Root=1-00000000-000000000000000000000000;Sampled=0",
        )
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertTrue(self.api.initialized)

    def test_response(self) -> None:
        """A posted response is the outcome, acknowledged with 202."""
        outcome = self.deliver()
        code, _, body = self.request("POST", BASE + "/invocation/req-1/response", data=b'"ok"')
        self.assertEqual((code, json.loads(body)), (202, {"status": "OK"}))
        self.assertEqual(self.successResultOf(outcome), Outcome(b'"ok"'))
        self.assertFalse(self.api.busy)

    def test_function_error(self) -> None:
        """A posted error is an outcome with the error type and the runtime's document."""
        outcome = self.deliver()
        document = b'{"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}'
        code, _, _ = self.request(
            "POST",
            BASE + "/invocation/req-1/error",
            data=document,
            headers={"Lambda-Runtime-Function-Error-Type": "Runtime.Unhandled"},
        )
        self.assertEqual(code, 202)
        self.assertEqual(self.successResultOf(outcome), Outcome(document, "Runtime.Unhandled"))

    def test_function_error_without_body(self) -> None:
        """An error posted without a body still yields an error document."""
        outcome = self.deliver()
        self.request(
            "POST",
            BASE + "/invocation/req-1/error",
            headers={"Lambda-Runtime-Function-Error-Type": "Shell.Failed"},
        )
        result = self.successResultOf(outcome)
        self.assertEqual(result.error_type, "Shell.Failed")
        self.assertEqual(json.loads(result.payload)["errorType"], "Shell.Failed")

    def test_wrong_request_id(self) -> None:
        """A post for another request id is refused and the invocation goes on."""
        outcome = self.deliver()
        code, _, body = self.request("POST", BASE + "/invocation/other/response", data=b"1")
        self.assertEqual((code, json.loads(body)["errorType"]), (400, "InvalidRequestID"))
        self.assertNoResult(outcome)

    def test_response_too_large(self) -> None:
        """A response over 6 MB is refused and becomes Lambda's size function error."""
        outcome = self.deliver()
        code, _, _ = self.request(
            "POST", BASE + "/invocation/req-1/response", data=b"x" * (MAX_RESPONSE_SIZE + 1)
        )
        self.assertEqual(code, 413)
        result = self.successResultOf(outcome)
        self.assertEqual(result.error_type, "Function.ResponseSizeTooLarge")
        self.assertEqual(json.loads(result.payload)["errorType"], "Function.ResponseSizeTooLarge")
        self.assertFalse(result.reusable)

    def test_init_error(self) -> None:
        """An init error is passed on with its body and error type."""
        code, _, _ = self.request(
            "POST",
            BASE + "/init/error",
            data=b'{"errorType": "Runtime.ImportModuleError"}',
            headers={"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
        )
        self.assertEqual(code, 202)
        self.assertEqual(
            self.init_errors,
            [(b'{"errorType": "Runtime.ImportModuleError"}', "Runtime.ImportModuleError")],
        )

    def test_init_error_after_init(self) -> None:
        """Once the runtime polled for events, an init error is refused."""
        self.deliver()
        code, _, _ = self.request("POST", BASE + "/init/error", data=b"{}")
        self.assertEqual(code, 403)
        self.assertEqual(self.init_errors, [])

    def test_withdraw_before_delivery(self) -> None:
        """An event the runtime has not received can be taken back."""
        outcome = self.api.submit(invocation())
        self.assertTrue(self.api.withdraw())
        self.failureResultOf(outcome, WithdrawnError)
        self.assertFalse(self.api.busy)
        d = self.client.get(NEXT)
        self.client.flush()
        self.assertNoResult(d)

    def test_withdraw_with_reason(self) -> None:
        """A withdrawn event can fail with a reason of the caller's choice."""
        outcome = self.api.submit(invocation())
        self.assertTrue(self.api.undelivered)
        self.assertTrue(self.api.withdraw(InvokeFailed(detail="deadline")))
        self.assertEqual(self.failureResultOf(outcome, InvokeFailed).value.detail, "deadline")
        self.assertFalse(self.api.undelivered)

    def test_initialized_once(self) -> None:
        """The first poll marks the end of init, once."""
        self.assertEqual(self.initialized, 0)
        outcome = self.deliver()
        self.request("POST", BASE + "/invocation/req-1/response", data=b"1")
        self.successResultOf(outcome)
        self.client.get(NEXT)
        self.client.flush()
        self.assertEqual(self.initialized, 1)

    def test_withdraw_after_delivery(self) -> None:
        """An event the runtime already has cannot be taken back."""
        outcome = self.deliver()
        self.assertFalse(self.api.withdraw())
        self.assertNoResult(outcome)

    def test_fail(self) -> None:
        """After fail(), the current and every later invocation fail with the reason."""
        outcome = self.deliver()
        self.api.fail(InvokeFailed(detail="gone"))
        self.assertEqual(self.failureResultOf(outcome, InvokeFailed).value.detail, "gone")
        later = self.api.submit(invocation("req-2"))
        self.assertEqual(self.failureResultOf(later, InvokeFailed).value.detail, "gone")

    def test_poll_without_answering(self) -> None:
        """Asking for the next event before answering the current one fails it."""
        outcome = self.deliver()
        d = self.client.get(NEXT)
        self.client.flush()
        self.failureResultOf(outcome, InvokeFailed)
        self.assertNoResult(d)

    def test_one_invocation_at_a_time(self) -> None:
        """Submitting while an invocation is in progress is a programming error."""
        self.deliver()
        self.assertRaises(RuntimeError, self.api.submit, invocation("req-2"))

    def test_unknown_paths(self) -> None:
        """Anything but the Runtime API endpoints is a 404."""
        self.assertEqual(self.request("GET", BASE + "/invocation/nexts")[0], 404)
        self.assertEqual(self.request("POST", BASE + "/invocation/req-1/other")[0], 404)
        self.assertEqual(self.request("POST", "http://127.0.0.1:9001/x")[0], 404)
