"""
The gateway resource through a real Site: routing, the envelope both ways,
the error contract and request ids, with a fake Lambda behind the real
AWSInvoker.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.testing import FakeContext, RawResponse

from .gateway_fixtures import FakeAWSGateway

ROUTES = """
[route:/lambda/]
timeout = 10s

[route:/lambda/special/]
single = special-fn
strip_path_prefix = yes
"""


def envelope(status: int = 200, body: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": "HTTPJSON-REP", "meta": {"status": status, **extra}, "body": body}


class GatewayRoundTripTests(SynchronousTestCase):
    """
    A request goes through as an HTTPJSON-REQ event and the reply comes back.
    """

    def setUp(self) -> None:
        self.events: list[Any] = []

        def echo(event: Any, context: FakeContext) -> Any:
            self.events.append(event)
            return envelope(201, "made", headers={"X-Fn": "yes"})

        self.gw = FakeAWSGateway(ROUTES, {"hello": echo, "special-fn": echo})

    def get(self, url: str, **kwargs: Any) -> Any:
        d = self.gw.client.get(url, **kwargs)
        self.gw.flush()
        return self.successResultOf(d)

    def test_event_carries_the_request(self) -> None:
        """
        Method, decoded path, raw query, host, proto and cleaned headers reach the function.
        """
        response = self.get(
            "http://gw.example:8080/lambda/hello/a%20b?y=1&y=2",
            headers={"X-Forwarded-For": "6.6.6.6", "Connection": "close, X-Drop", "X-Drop": "1"},
        )
        self.assertEqual(response.code, 201)
        self.assertEqual(self.successResultOf(response.content()), b"made")
        [event] = self.events
        self.assertEqual(event["type"], "HTTPJSON-REQ")
        meta = event["meta"]
        self.assertEqual(meta["method"], "GET")
        self.assertEqual(meta["path"], "/lambda/hello/a b")
        self.assertEqual(meta["query"], "y=1&y=2")
        self.assertEqual(meta["host"], "gw.example:8080")
        self.assertEqual(meta["proto"], "HTTP/1.1")
        headers = meta["headers"]
        self.assertNotEqual(headers["x-forwarded-for"], ["6.6.6.6"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertNotIn("connection", headers)
        self.assertNotIn("x-drop", headers)
        self.assertEqual(headers["x-request-id"], response.headers.getRawHeaders("x-request-id"))

    def test_single_route_strips_prefix(self) -> None:
        """
        The longest prefix wins; a single route invokes its fixed function.
        """
        response = self.get("http://gw/lambda/special/x/y")
        self.assertEqual(response.code, 201)
        self.assertEqual(self.gw.lambda_api.calls[-1].function, "special-fn")
        self.assertEqual(self.events[-1]["meta"]["path"], "/x/y")

    def test_request_id_is_kept_when_valid(self) -> None:
        """
        A valid X-Request-ID is reused; an invalid one is replaced.
        """
        kept = self.get("http://gw/lambda/hello", headers={"X-Request-ID": "abc-123"})
        self.assertEqual(kept.headers.getRawHeaders("x-request-id"), ["abc-123"])
        replaced = self.get("http://gw/lambda/hello", headers={"X-Request-ID": "bad id\x01"})
        [new_id] = replaced.headers.getRawHeaders("x-request-id")
        self.assertNotEqual(new_id, "bad id\x01")
        self.assertEqual(len(new_id), 36)

    def test_headers_not_utf8(self) -> None:
        """
        X-Request-ID, X-Amzn-Trace-Id and Host in bytes that are not UTF-8 are
        served like any other bad value, with nothing logged as a failure:
        the id is replaced, the trace id is not passed on to Lambda, and the
        function reads them as Latin-1 (as every header it sees).
        """
        with capturedLogs() as events:
            response = self.get(
                "http://gw/lambda/hello",
                headers={
                    b"Host": [b"caf\xe9"],
                    b"X-Request-ID": [b"caf\xe9"],
                    b"X-Amzn-Trace-Id": [b"Root=caf\xe9"],
                },
            )
        self.assertEqual(response.code, 201)
        [new_id] = response.headers.getRawHeaders("x-request-id")
        self.assertEqual(len(new_id), 36)
        self.assertEqual(self.events[-1]["meta"]["host"], "caf\xe9")
        self.assertNotIn("x-amzn-trace-id", self.gw.lambda_api.calls[-1].headers)
        self.assertEqual(self.events[-1]["meta"]["headers"]["x-amzn-trace-id"], ["Root=caf\xe9"])
        self.assertEqual([e for e in events if "log_failure" in e], [])


class BinaryAndCookieTests(SynchronousTestCase):
    """
    Binary bodies survive both ways and several Set-Cookie headers stay apart.
    """

    def test_binary_round_trip(self) -> None:
        """
        A non-UTF-8 upload is base64 in the event; a base64 reply is sent as bytes.
        """
        blob = bytes(range(256)) * 4

        def png(event: Any, context: FakeContext) -> Any:
            assert event["bodyEncoding"] == "base64"
            received = base64.b64decode(event["body"])
            return {
                "type": "HTTPJSON-REP",
                "meta": {
                    "status": 200,
                    "headers": {
                        "Content-Type": "image/png",
                        "Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly"],
                        "Content-Length": "1",
                        "Transfer-Encoding": "chunked",
                    },
                },
                "body": base64.b64encode(received[::-1]).decode(),
                "bodyEncoding": "base64",
            }

        gw = FakeAWSGateway(ROUTES, {"png": png})
        d = gw.client.post("http://gw/lambda/png", data=blob)
        gw.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(response.content()), blob[::-1])
        self.assertEqual(
            response.headers.getRawHeaders("set-cookie"), ["a=1; Path=/", "b=2; HttpOnly"]
        )
        self.assertEqual(response.length, len(blob))
        self.assertIsNone(response.headers.getRawHeaders("transfer-encoding"))


class ErrorContractTests(SynchronousTestCase):
    """
    Every failure is a JSON error with a real status, never an empty 200.
    """

    def answer(self, result: Any, url: str = "http://gw/lambda/fn") -> tuple[Any, Any, Any]:
        gw = FakeAWSGateway(ROUTES, {"fn": lambda event, context: result})
        with capturedLogs() as events:
            d = gw.client.get(url)
            gw.flush()
            response = self.successResultOf(d)
            document = json.loads(self.successResultOf(response.content()))
        self.assertEqual(set(document), {"error", "request_id"})
        self.assertEqual([document["request_id"]], response.headers.getRawHeaders("x-request-id"))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        return response, document, events

    def assertStatus(self, result: Any, status: int) -> Any:
        response, _, _ = self.answer(result)
        self.assertEqual(response.code, status)
        return response

    def test_lambda_client_errors_are_502(self) -> None:
        """
        Lambda's 400, 403 and 404 mean the gateway is misconfigured: 502.
        """
        for status, name in [
            (400, "InvalidRequestContentException"),
            (403, "AccessDeniedException"),
            (404, "ResourceNotFoundException"),
        ]:
            self.assertStatus(RawResponse.error(status, name, "no"), 502)

    def test_lambda_server_errors_are_502(self) -> None:
        """
        Lambda's 5xx faults are 502.
        """
        for status, name in [
            (500, "ServiceException"),
            (502, "ResourceNotReadyException"),
            (503, "ServiceUnavailable"),
        ]:
            self.assertStatus(RawResponse.error(status, name, "down"), 502)

    def test_throttling_is_503_with_retry_after(self) -> None:
        """
        A 429 from Lambda is a 503 that passes Retry-After on.
        """
        throttled = RawResponse.error(
            429, "TooManyRequestsException", "Rate exceeded", **{"Retry-After": "7"}
        )
        response = self.assertStatus(throttled, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["7"])

    def test_payload_too_large_is_413(self) -> None:
        """
        Lambda's 413, whatever it calls it, is a 413.
        """
        self.assertStatus(RawResponse.error(413, "RequestEntityTooLargeException", "big"), 413)

    def test_function_error_is_502_without_details(self) -> None:
        """
        A function error is a 502; its type and message go to the log only.
        """

        def boom(event: Any, context: FakeContext) -> Any:
            raise ValueError("secret internals")

        gw = FakeAWSGateway(ROUTES, {"fn": boom})
        with capturedLogs() as events:
            d = gw.client.get("http://gw/lambda/fn")
            gw.flush()
            response = self.successResultOf(d)
            body = self.successResultOf(response.content())
        self.assertEqual(response.code, 502)
        self.assertNotIn(b"secret", body)
        self.assertNotIn(b"ValueError", body)
        [logged] = [e for e in events if e.get("error_type") == "ValueError"]
        self.assertEqual(logged["error_message"], "secret internals")
        self.assertEqual(logged["kind"], "Unhandled")
        self.assertEqual(logged["request_id"], json.loads(body)["request_id"])

    def test_malformed_envelope_is_502(self) -> None:
        """
        An HTTPJSON-REP with a bad field is a 502, not passed through raw.
        """
        self.assertStatus(envelope(status=700), 502)
        self.assertStatus({"type": "HTTPJSON-REP", "meta": {"headers": {"X": "a\r\nb"}}}, 502)

    def test_bad_json_from_lambda_is_passed_raw(self) -> None:
        """
        A result that is no envelope is the original's raw mode: 200, JSON type.
        """
        gw = FakeAWSGateway(ROUTES, {"fn": lambda event, context: ["just", "data"]})
        d = gw.client.get("http://gw/lambda/fn")
        gw.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(response.content()), b'["just", "data"]')

    def test_no_route_and_rejected_names_are_404(self) -> None:
        """
        Unknown prefixes and invalid names are 404 and invoke nothing.
        """
        gw = FakeAWSGateway(ROUTES, {"fn": lambda event, context: {}})
        for url in [
            "http://gw/elsewhere",
            "http://gw/lambda/",
            "http://gw/lambda/fn%3Aprod",
            "http://gw/lambda/a.b",
        ]:
            d = gw.client.get(url)
            gw.flush()
            response = self.successResultOf(d)
            self.assertEqual(response.code, 404, url)
            self.assertIn(b"request_id", self.successResultOf(response.content()))
        self.assertEqual(gw.lambda_api.calls, [])

    def test_invalid_utf8_path_is_400(self) -> None:
        """
        A percent-encoded path that does not decode as UTF-8 is a 400.
        """
        gw = FakeAWSGateway(ROUTES)
        d = gw.client.get("http://gw/lambda/fn/%ff")
        gw.flush()
        self.assertEqual(self.successResultOf(d).code, 400)

    def test_timeout_is_504(self) -> None:
        """
        A function slower than the route timeout is a 504, and its call is cancelled.
        """
        never: Deferred[Any] = Deferred()
        gw = FakeAWSGateway(ROUTES, {"slow": lambda event, context: never})
        d = gw.client.get("http://gw/lambda/slow")
        gw.flush()
        self.assertNoResult(d)
        gw.clock.advance(9)
        gw.flush()
        self.assertNoResult(d)
        gw.clock.advance(2)
        gw.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 504)
        self.assertIsNotNone(never.called)

    def test_client_disconnect_cancels_invoke(self) -> None:
        """
        When the client goes away the invocation is cancelled and no error is logged.
        """
        cancelled: list[bool] = []
        pending: Deferred[Any] = Deferred(lambda d: cancelled.append(True))
        gw = FakeAWSGateway(ROUTES, {"slow": lambda event, context: pending})
        with capturedLogs() as events:
            d = gw.client.get("http://gw/lambda/slow")
            gw.flush()
            d.cancel()
            gw.flush()
        self.failureResultOf(d)
        self.assertEqual(cancelled, [True])
        self.assertEqual([e for e in events if e.get("log_failure")], [])


class ExchangeRecordTests(SynchronousTestCase):
    """
    Observers get one complete record per request, whatever its outcome.
    """

    def test_served_request_is_recorded(self) -> None:
        """
        Route, function, status, bytes, timings and the AWS request id are recorded.
        """
        gw = FakeAWSGateway(ROUTES, {"hello": lambda event, context: envelope(200, "hi")})
        records: list[Any] = []
        gw.gateway.resource.observers.append(records.append)
        d = gw.client.get("http://gw/lambda/hello/x")
        gw.flush()
        response = self.successResultOf(d)
        [record] = records
        self.assertEqual(record.status, 200)
        self.assertEqual(record.route, "/lambda/")
        self.assertEqual(record.function, "hello")
        self.assertEqual(record.bytes_out, 2)
        self.assertEqual(record.outcome, "served")
        self.assertEqual([record.request_id], response.headers.getRawHeaders("x-request-id"))
        self.assertIsNotNone(record.aws_request_id)
        self.assertEqual(record.duration, 0)

    def test_gone_client_is_recorded(self) -> None:
        """
        A request whose client left is recorded with status 0 and outcome client_gone.
        """
        pending: Deferred[Any] = Deferred()
        gw = FakeAWSGateway(ROUTES, {"slow": lambda event, context: pending})
        records: list[Any] = []
        gw.gateway.resource.observers.append(records.append)
        d = gw.client.get("http://gw/lambda/slow")
        gw.flush()
        gw.clock.advance(2)
        d.cancel()
        gw.flush()
        self.failureResultOf(d)
        [record] = records
        self.assertEqual((record.status, record.outcome), (0, "client_gone"))
        self.assertEqual(record.duration, 2)


class CapacityTests(SynchronousTestCase):
    """
    max_in_flight and draining protect the gateway and tell load balancers.
    """

    def test_over_capacity_is_503(self) -> None:
        """
        Past max_in_flight concurrent invocations, requests get 503 with Retry-After.
        """
        from twisted_lambdagw.core.formats import get_format
        from twisted_lambdagw.server.resource import Binding, GatewayResource
        from twisted_lambdagw.testing import InProcessInvoker

        from .gateway_fixtures import config_from

        pending: Deferred[Any] = Deferred()
        invoker = InProcessInvoker({"slow": lambda event, context: pending})
        [route] = config_from("[route:/lambda/]\naws_region = us-east-1\n").routes
        resource = GatewayResource(
            [Binding(route, invoker, get_format("httpjson"))], Clock(), max_in_flight=1
        )
        from treq.testing import StubTreq

        client: Any = StubTreq(resource)
        first = client.get("http://gw/lambda/slow")
        client.flush()
        second = client.get("http://gw/lambda/slow")
        client.flush()
        refused = self.successResultOf(second)
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["1"])
        self.assertNoResult(first)
        pending.callback({"ok": 1})
        client.flush()
        self.assertEqual(self.successResultOf(first).code, 200)
        self.assertEqual(resource.in_flight, 0)

    def test_health_while_draining(self) -> None:
        """
        The health path answers 200 while serving and 503 while draining.
        """
        gw = FakeAWSGateway(ROUTES)
        d = gw.client.get("http://gw/healthz")
        gw.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        gw.gateway.resource.draining = True
        d = gw.client.get("http://gw/healthz")
        gw.flush()
        self.assertEqual(self.successResultOf(d).code, 503)
