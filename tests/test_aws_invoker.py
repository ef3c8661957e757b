"""
The AWS invoker's promises, on a fake clock: what is retried and what never
is, Lambda's Retry-After, forced credential refreshes, log tails, trace ids,
asynchronous invocations and results that are not JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

from botocore.credentials import Credentials
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError, DNSLookupError, TimeoutError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import RequestNotSent, ResponseNeverReceived
from twisted.web.client import ResponseFailed
from twisted.web.http_headers import Headers

from twisted_lambdagw.core.errors import InvokeFailed, Throttled
from twisted_lambdagw.core.messages import NOT_PARSED
from twisted_lambdagw.invokers.aws.invoker import AWSInvoker, CredentialSource
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult
from twisted_lambdagw.testing import FakeContext, FakeLambda, RawResponse

from .gateway_fixtures import FakeAWSGateway

ENDPOINT = "https://lambda.us-west-2.amazonaws.com"
START = 1_700_000_000.0


class FlakyClient:
    """
    A treq client that fails the first posts as told, then sends for real.

    Records the headers of every attempt, failed or not.
    """

    def __init__(self, inner: Any, failures: list[BaseException]) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts: list[Headers] = []
        self.reactors: list[Any] = []

    def post(self, url: str, **kwargs: Any) -> Deferred[Any]:
        self.attempts.append(kwargs["headers"])
        self.reactors.append(kwargs.get("reactor"))
        if self.failures:
            return fail(self.failures.pop(0))
        result: Deferred[Any] = self.inner.post(url, **kwargs)
        return result


class Harness:
    """
    A real AWSInvoker in front of a FakeLambda, on a fake clock.
    """

    def __init__(
        self,
        answers: list[Any] | None = None,
        *,
        failures: list[BaseException] | None = None,
        credentials: CredentialSource | None = None,
        **options: Any,
    ) -> None:
        self.answers = list(answers or [])
        self.clock = Clock()
        self.clock.advance(START)
        self.api = FakeLambda({"fn": self.answer})
        self.stub = StubTreq(self.api)
        self.client = FlakyClient(self.stub, failures or [])
        self.invoker = AWSInvoker(
            self.client,
            credentials or CredentialSource.from_keys("AKIDEXAMPLE", "secret"),
            "us-west-2",
            ENDPOINT,
            clock=self.clock,
            jitter=lambda: 0.5,
            **options,
        )

    def answer(self, event: Any, context: FakeContext) -> Any:
        if not self.answers:
            return {"ok": True}
        return self.answers.pop(0)

    def invoke(self, method: str = "POST", **call: Any) -> Deferred[InvokeResult]:
        call.setdefault("function", "fn")
        call.setdefault("payload", b"{}")
        d = Deferred.fromCoroutine(self.invoker.invoke(InvokeCall(method=method, **call)))
        self.stub.flush()
        return d

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.stub.flush()


def error(status: int, name: str, **headers: str) -> RawResponse:
    return RawResponse.error(status, name, f"{name} happened", **headers)


class TreqCallTests(SynchronousTestCase):
    """
    How the invoker calls treq.
    """

    def test_treq_gets_the_clock(self) -> None:
        """
        treq is handed the invoker's clock with every call (for each attempt),
        so it never imports the global reactor itself.
        """
        h = Harness()
        h.client.failures.append(RequestNotSent())
        self.successResultOf(h.invoke())
        self.assertEqual(len(h.client.reactors), 2)
        for reactor in h.client.reactors:
            self.assertIs(reactor, h.clock)


class UnsentRetryTests(SynchronousTestCase):
    """
    A request that never left is sent again once, re-signed, whatever the method.
    """

    def test_each_kind_of_unsent_failure(self) -> None:
        """
        Refused, DNS, connect timeout and a closed pooled connection: one more try.
        """
        for failure in [
            ConnectionRefusedError("refused"),
            DNSLookupError("no such host"),
            TimeoutError("connect timed out"),
            RequestNotSent(),
        ]:
            h = Harness()
            h.client.failures.append(failure)
            result = self.successResultOf(h.invoke())
            self.assertEqual(json.loads(result.payload), {"ok": True})
            self.assertEqual(len(h.client.attempts), 2, failure)
            self.assertEqual(len(h.api.calls), 1)

    def test_retry_is_signed_again(self) -> None:
        """
        The second attempt carries its own signing time and signature.
        """
        times: Iterator[float] = iter([START, START + 1, START + 2])
        h = Harness(now=lambda: next(times))
        h.client.failures.append(ConnectionRefusedError())
        self.successResultOf(h.invoke())
        first, second = h.client.attempts
        self.assertNotEqual(first.getRawHeaders("X-Amz-Date"), second.getRawHeaders("X-Amz-Date"))
        first_signature = first.getRawHeaders("Authorization")
        [second_signature] = second.getRawHeaders("Authorization", [])
        self.assertNotEqual(first_signature, [second_signature])
        self.assertEqual(h.api.calls[0].headers["authorization"], second_signature)

    def test_only_once(self) -> None:
        """
        Two refused connections in a row are a 502 after two attempts.
        """
        h = Harness(failures=[ConnectionRefusedError(), ConnectionRefusedError()])
        failure = self.failureResultOf(h.invoke(), InvokeFailed)
        self.assertIn("attempt 2", failure.value.detail)
        self.assertEqual(len(h.client.attempts), 2)

    def test_sent_failure_is_not_retried(self) -> None:
        """
        A POST whose connection dropped after sending may have run: no second try.
        """
        for failure in [
            ResponseNeverReceived([Failure(ConnectionRefusedError("lost"))]),
            ResponseFailed([Failure(ConnectionRefusedError("reset"))]),
        ]:
            h = Harness(failures=[failure])
            self.failureResultOf(h.invoke(), InvokeFailed)
            self.assertEqual(len(h.client.attempts), 1)


class IdempotentRetryTests(SynchronousTestCase):
    """
    With retry_idempotent, GET/HEAD/OPTIONS retry 429, 5xx and dropped
    connections with backoff, within the timeout; nothing else does.
    """

    def test_server_errors_retried_for_get(self) -> None:
        """
        Two 5xx answers, then success: waits of 37.5ms then 75ms (half the base, plus jitter).
        """
        h = Harness(
            [error(500, "ServiceException"), error(502, "ResourceNotReadyException")],
            retry_idempotent=True,
        )
        d = h.invoke("GET")
        self.assertNoResult(d)
        self.assertEqual(len(h.api.calls), 1)
        h.advance(0.0375)
        self.assertEqual(len(h.api.calls), 2)
        self.assertNoResult(d)
        h.advance(0.074)
        self.assertNoResult(d)
        h.advance(0.002)
        self.assertEqual(json.loads(self.successResultOf(d).payload), {"ok": True})
        self.assertEqual(len(h.api.calls), 3)

    def test_gives_up_after_three_attempts(self) -> None:
        """
        The third failure is the answer: 502.
        """
        h = Harness([error(503, "X"), error(503, "X"), error(500, "ServiceException")])
        h.invoker._retry_idempotent = True
        d = h.invoke("HEAD")
        h.advance(1)
        h.advance(1)
        failure = self.failureResultOf(d, InvokeFailed)
        self.assertEqual(failure.value.code, "ServiceException")
        self.assertEqual(len(h.api.calls), 3)

    def test_methods_and_route_switch(self) -> None:
        """
        POST never retries a 5xx; neither does GET when the route did not ask.
        """
        for method, switch in [("POST", True), ("PUT", True), ("GET", False), ("", True)]:
            h = Harness([error(500, "ServiceException")], retry_idempotent=switch)
            d = h.invoke(method)
            h.advance(5)
            self.failureResultOf(d, InvokeFailed)
            self.assertEqual(len(h.api.calls), 1, (method, switch))

    def test_options_retries_dropped_connection(self) -> None:
        """
        An idempotent call may retry even after its request was sent.
        """
        h = Harness(
            failures=[ResponseNeverReceived([Failure(ConnectionRefusedError("lost"))])],
            retry_idempotent=True,
        )
        d = h.invoke("OPTIONS")
        h.advance(1)
        self.successResultOf(d)
        self.assertEqual(len(h.client.attempts), 2)

    def test_retry_after_is_honoured(self) -> None:
        """
        A 429 with Retry-After: 7 waits seven seconds, not the backoff.
        """
        h = Harness(
            [error(429, "TooManyRequestsException", **{"Retry-After": "7"})],
            retry_idempotent=True,
        )
        d = h.invoke("GET", timeout=30.0)
        h.advance(6.9)
        self.assertNoResult(d)
        self.assertEqual(len(h.api.calls), 1)
        h.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(len(h.api.calls), 2)

    def test_no_wait_past_the_timeout(self) -> None:
        """
        When Retry-After would outlast the route timeout, the 503 comes at once.
        """
        h = Harness(
            [error(429, "TooManyRequestsException", **{"Retry-After": "7"})],
            retry_idempotent=True,
        )
        failure = self.failureResultOf(h.invoke("GET", timeout=5.0), Throttled)
        self.assertEqual(failure.value.response_headers(), [("Retry-After", "7")])
        self.assertEqual(len(h.api.calls), 1)

    def test_client_errors_are_not_retried(self) -> None:
        """
        A 4xx other than 429 is final even for GET.
        """
        h = Harness([error(404, "ResourceNotFoundException")], retry_idempotent=True)
        d = h.invoke("GET")
        h.advance(5)
        self.failureResultOf(d, InvokeFailed)
        self.assertEqual(len(h.api.calls), 1)

    def test_cancel_during_backoff(self) -> None:
        """
        Cancelling while waiting to retry stops there: no further attempt.
        """
        h = Harness([error(500, "ServiceException")], retry_idempotent=True)
        d = h.invoke("GET")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        h.advance(5)
        self.assertEqual(len(h.api.calls), 1)


def refreshable_source(keys: list[str]) -> tuple[CredentialSource, list[str]]:
    """
    A resolved source that hands out the next access key each time it resolves.
    """
    resolved: list[str] = []

    def resolve() -> Credentials:
        resolved.append(keys[len(resolved)])
        return Credentials(resolved[-1], "secret", "token")

    def run(f: Callable[[], Any]) -> Deferred[Any]:
        return succeed(f())

    source = CredentialSource(run, resolve=resolve)
    return source, resolved


class ExpiredTokenTests(SynchronousTestCase):
    """
    ExpiredTokenException means the call never ran: refresh, sign again, once.
    """

    def test_refresh_then_success(self) -> None:
        """
        The second attempt is signed with the refreshed key and succeeds, even for POST.
        """
        source, resolved = refreshable_source(["OLDKEY", "NEWKEY"])
        h = Harness(credentials=source)
        h.answers = [error(403, "ExpiredTokenException")]
        self.successResultOf(h.invoke("POST"))
        self.assertEqual(resolved, ["OLDKEY", "NEWKEY"])
        keys = [call.headers["authorization"].split("Credential=")[1][:6] for call in h.api.calls]
        self.assertEqual(keys, ["OLDKEY", "NEWKEY"])

    def test_only_once(self) -> None:
        """
        Still expired after the refresh: a 502, no third call.
        """
        source, resolved = refreshable_source(["K1", "K2", "K3"])
        h = Harness(credentials=source)
        h.answers = [error(403, "ExpiredTokenException"), error(403, "ExpiredToken")]
        self.failureResultOf(h.invoke(), InvokeFailed)
        self.assertEqual(len(h.api.calls), 2)
        self.assertEqual(resolved, ["K1", "K2"])

    def test_static_keys_cannot_refresh(self) -> None:
        """
        Static keys with an expired session token: a 502 at once.
        """
        h = Harness([error(403, "ExpiredTokenException")])
        self.failureResultOf(h.invoke(), InvokeFailed)
        self.assertEqual(len(h.api.calls), 1)

    def test_same_keys_after_refresh(self) -> None:
        """
        A refresh that yields the same keys is not worth a second call.
        """
        source, resolved = refreshable_source(["SAME", "SAME"])
        h = Harness(credentials=source)
        h.answers = [error(403, "ExpiredTokenException")]
        self.failureResultOf(h.invoke(), InvokeFailed)
        self.assertEqual(len(h.api.calls), 1)
        self.assertEqual(resolved, ["SAME", "SAME"])


class ResultTests(SynchronousTestCase):
    """
    What a 2xx from Lambda becomes.
    """

    def test_empty_or_garbage_200_is_invoke_failure(self) -> None:
        """
        Lambda's payload is always JSON: an empty or non-JSON 200 is a 502, logged.
        """
        for body in [b"", b"  \n", b"<html>", b'{"a": ', b"\xff\xfe"]:
            h = Harness([RawResponse(200, body, {"x-amzn-RequestId": "req-1"})])
            with capturedLogs() as events:
                failure = self.failureResultOf(h.invoke(), InvokeFailed)
            self.assertEqual(failure.value.aws_request_id, "req-1")
            [logged] = [e for e in events if "problem" in e]
            self.assertEqual(logged["aws_request_id"], "req-1")

    def test_any_json_value_is_a_result(self) -> None:
        """
        A string, a number or null is valid JSON and passes.
        """
        for body in [b'"text"', b"42", b"null", b"[1]", b' {"a": 1}\n']:
            h = Harness([RawResponse(200, body)])
            self.assertEqual(self.successResultOf(h.invoke()).payload, body)

    def test_parsed_document_is_passed_on(self) -> None:
        """
        A synchronous result is parsed once, by the check: the document goes
        with it, for the format to read instead of the bytes.
        """
        for body in [b'{"statusCode": 201, "body": "x"}', b'"text"', b"null", b" [1]\n"]:
            h = Harness([RawResponse(200, body)])
            result = self.successResultOf(h.invoke())
            self.assertEqual(result.document, json.loads(body))
            self.assertIsNot(result.document, NOT_PARSED)

    def test_not_parsed_when_not_checked(self) -> None:
        """
        A function error's payload is not parsed (it need not be JSON); an
        asynchronous call's is not either.
        """
        h = Harness([RawResponse(200, b"{}", {"X-Amz-Function-Error": "Unhandled"})])
        self.assertIs(self.successResultOf(h.invoke()).document, NOT_PARSED)
        h = Harness([RawResponse(202, b"")])
        result = self.successResultOf(h.invoke(invocation_type="Event"))
        self.assertIs(result.document, NOT_PARSED)

    def test_function_error_with_any_payload(self) -> None:
        """
        A function error's payload need not be JSON; it is the caller's to log.
        """
        h = Harness([RawResponse(200, b"plain text", {"X-Amz-Function-Error": "Unhandled"})])
        result = self.successResultOf(h.invoke())
        self.assertEqual(result.function_error, "Unhandled")

    def test_metadata(self) -> None:
        """
        The executed version and AWS request id are on the result.
        """
        h = Harness([RawResponse(200, b"{}", {"X-Amz-Executed-Version": "7"})])
        result = self.successResultOf(h.invoke())
        self.assertEqual(result.executed_version, "7")
        self.assertIsNotNone(result.aws_request_id)


class LogTailTests(SynchronousTestCase):
    """
    log_type = Tail asks Lambda for the log, which is logged with function errors.
    """

    TAIL = "START RequestId: 1\nTraceback: boom\nEND RequestId: 1\n"

    def test_header_sent_only_when_asked(self) -> None:
        """
        X-Amz-Log-Type: Tail is sent, and signed, for a Tail route only.
        """
        for log_type, expected in [("Tail", "Tail"), ("None", None)]:
            h = Harness(log_type=log_type)
            self.successResultOf(h.invoke())
            headers = h.api.calls[0].headers
            self.assertEqual(headers.get("x-amz-log-type"), expected)
            if expected:
                self.assertIn("x-amz-log-type", headers["authorization"])

    def test_not_for_event_calls(self) -> None:
        """
        Lambda returns no log for asynchronous calls, so none is asked for.
        """
        h = Harness(log_type="Tail")
        self.successResultOf(h.invoke(invocation_type="Event"))
        self.assertNotIn("x-amz-log-type", h.api.calls[0].headers)

    def test_function_error_logs_decoded_tail(self) -> None:
        """
        The base64 X-Amz-Log-Result is decoded into the log line.
        """
        encoded = base64.b64encode(self.TAIL.encode()).decode()
        answer = RawResponse(
            200,
            b'{"errorMessage": "boom"}',
            {"X-Amz-Function-Error": "Unhandled", "X-Amz-Log-Result": encoded},
        )
        h = Harness([answer], log_type="Tail")
        with capturedLogs() as events:
            result = self.successResultOf(h.invoke(request_id="rid-1"))
        self.assertEqual(result.log_result, encoded)
        [logged] = [e for e in events if "log_tail" in e]
        self.assertEqual(logged["log_tail"], self.TAIL)
        self.assertEqual(logged["request_id"], "rid-1")

    def test_gateway_keeps_the_tail_from_the_client(self) -> None:
        """
        Through the gateway: a 502 whose body holds nothing of the tail.
        """

        def failing(event: Any, context: FakeContext) -> Any:
            tail = base64.b64encode(b"secret-log-line").decode()
            return RawResponse(
                200,
                b'{"errorMessage": "x"}',
                {"X-Amz-Function-Error": "Handled", "X-Amz-Log-Result": tail},
            )

        gw = FakeAWSGateway("[route:/lambda/]\nlog_type = Tail\n", {"fn": failing})
        with capturedLogs() as events:
            d = gw.client.get("http://gw/lambda/fn")
            gw.flush()
            response = self.successResultOf(d)
            body = self.successResultOf(response.content())
        self.assertEqual(response.code, 502)
        self.assertNotIn(b"secret-log-line", body)
        self.assertIn("secret-log-line", [e.get("log_tail") for e in events])
        self.assertEqual(gw.lambda_api.calls[0].headers["x-amz-log-type"], "Tail")


class TraceIdTests(SynchronousTestCase):
    """
    X-Amzn-Trace-Id goes through for X-Ray, outside the signature.
    """

    def test_sent_and_not_signed(self) -> None:
        """
        The header arrives as the client sent it and is not in SignedHeaders.
        """
        trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        gw = FakeAWSGateway("[route:/lambda/]\n", {"fn": lambda event, context: {}})
        d = gw.client.get("http://gw/lambda/fn", headers={"X-Amzn-Trace-Id": trace})
        gw.flush()
        self.successResultOf(d)
        headers = gw.lambda_api.calls[0].headers
        self.assertEqual(headers["x-amzn-trace-id"], trace)
        signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
        self.assertNotIn("x-amzn-trace-id", signed.split(";"))
        self.assertIn("x-amz-invocation-type", signed.split(";"))

    def test_line_break_cannot_add_a_header(self) -> None:
        """
        A value with a line break (not possible from a client, whose headers
        twisted.web checks, but the invoker does not rely on that) is sent
        with the break made a space: no header of its own reaches Lambda.
        """
        h = Harness()
        self.successResultOf(h.invoke(trace_id="Root=1\r\nX-Injected: yes"))
        headers = h.api.calls[0].headers
        self.assertEqual(headers["x-amzn-trace-id"], "Root=1 X-Injected: yes")
        self.assertNotIn("x-injected", headers)
        self.assertEqual(
            h.client.attempts[0].getRawHeaders(b"x-amzn-trace-id"), [b"Root=1 X-Injected: yes"]
        )

    def test_absent_when_client_sent_none(self) -> None:
        """
        No trace header from the client, none to Lambda.
        """
        gw = FakeAWSGateway("[route:/lambda/]\n", {"fn": lambda event, context: {}})
        d = gw.client.get("http://gw/lambda/fn")
        gw.flush()
        self.successResultOf(d)
        self.assertNotIn("x-amzn-trace-id", gw.lambda_api.calls[0].headers)


class EventInvocationTests(SynchronousTestCase):
    """
    invocation_type = Event: Lambda queues the event; the client gets 202.
    """

    def test_accepted_with_aws_request_id(self) -> None:
        """
        202 with the gateway's and Lambda's request ids; the call said Event.
        """
        gw = FakeAWSGateway(
            "[route:/jobs/]\ninvocation_type = Event\n", {"fn": lambda event, context: {}}
        )
        d = gw.client.post("http://gw/jobs/fn", data=b"work")
        gw.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 202)
        document = json.loads(self.successResultOf(response.content()))
        [call] = gw.lambda_api.calls
        self.assertEqual(call.headers["x-amz-invocation-type"], "Event")
        self.assertIn("x-amz-invocation-type", call.headers["authorization"])
        self.assertEqual(document["request_id"], response.headers.getRawHeaders("x-request-id")[0])
        self.assertIsNotNone(document["aws_request_id"])
        self.assertEqual(len(document["aws_request_id"]), 36)

    def test_refused_event_is_an_error(self) -> None:
        """
        An Event call Lambda refuses (no such function) is a 502, not a 202.
        """
        gw = FakeAWSGateway("[route:/jobs/]\ninvocation_type = Event\n", {})
        d = gw.client.post("http://gw/jobs/missing", data=b"work")
        gw.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 502)
