"""
Every error Lambda's Invoke API can answer with, through the real gateway:
the status and body the client gets, and what the log says.

The table is research/lambda-protocol.md §1.5 (botocore's Lambda model),
written out here on its own so the code's classification is checked against
it rather than against itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from twisted_lambdagw.invokers.aws.invoker import error_code
from twisted_lambdagw.testing import FakeContext, RawResponse

from .gateway_fixtures import FakeAWSGateway

ROUTES = """
[route:/lambda/]
timeout = 10s
"""

# (x-amzn-ErrorType, Lambda's status, the message key its body uses, the client's status)
LAMBDA_ERRORS: list[tuple[str, int, str, int]] = [
    ("InvalidParameterValueException", 400, "message", 502),
    ("InvalidRequestContentException", 400, "message", 502),
    ("NoPublishedVersionException", 400, "Message", 502),
    ("RecursiveInvocationException", 400, "Message", 502),
    ("SnapStartException", 400, "Message", 502),
    ("EFSMountFailureException", 403, "Message", 502),
    ("S3FilesMountFailureException", 403, "Message", 502),
    ("ResourceNotFoundException", 404, "Message", 502),
    ("EFSMountConnectivityException", 408, "Message", 502),
    ("EFSMountTimeoutException", 408, "Message", 502),
    ("S3FilesMountConnectivityException", 408, "Message", 502),
    ("S3FilesMountTimeoutException", 408, "Message", 502),
    ("SnapStartTimeoutException", 408, "Message", 502),
    ("ResourceConflictException", 409, "message", 502),
    ("SnapStartNotReadyException", 409, "Message", 502),
    ("DurableExecutionAlreadyStartedException", 409, "Message", 502),
    ("EFSIOException", 410, "Message", 502),
    ("RequestTooLargeException", 413, "message", 413),
    ("SerializedRequestEntityTooLargeException", 413, "message", 413),
    ("UnsupportedMediaTypeException", 415, "message", 502),
    ("TooManyRequestsException", 429, "message", 503),
    ("ServiceException", 500, "Message", 502),
    ("EC2AccessDeniedException", 502, "Message", 502),
    ("EC2ThrottledException", 502, "Message", 503),
    ("EC2UnexpectedException", 502, "Message", 502),
    ("ENILimitReachedException", 502, "Message", 502),
    ("SubnetIPAddressLimitReachedException", 502, "Message", 502),
    ("InvalidSubnetIDException", 502, "Message", 502),
    ("InvalidSecurityGroupIDException", 502, "Message", 502),
    ("KMSAccessDeniedException", 502, "Message", 502),
    ("KMSDisabledException", 502, "Message", 502),
    ("KMSInvalidStateException", 502, "Message", 502),
    ("KMSNotFoundException", 502, "Message", 502),
    ("InvalidRuntimeException", 502, "Message", 502),
    ("InvalidZipFileException", 502, "Message", 502),
    ("ResourceNotReadyException", 502, "message", 502),
]

# Not in the Lambda model, but sent by AWS's front end for any service.
GENERIC_ERRORS: list[tuple[str, int, str, int]] = [
    ("AccessDeniedException", 403, "Message", 502),
    ("InvalidSignatureException", 403, "message", 502),
    ("IncompleteSignatureException", 403, "message", 502),
    ("UnrecognizedClientException", 403, "message", 502),
    ("ExpiredTokenException", 403, "message", 502),
    ("RequestEntityTooLargeException", 413, "message", 413),
    ("SomethingNewException", 413, "message", 413),
    ("ServiceUnavailableException", 503, "message", 502),
]

CLIENT_MESSAGES = {
    502: "function invocation failed",
    503: "function throttled",
    413: "request too large for the function",
}


def answering(answer: RawResponse) -> Callable[[Any, FakeContext], RawResponse]:
    """
    A handler that always gives ``answer``.
    """

    def handler(event: Any, context: FakeContext) -> RawResponse:
        return answer

    return handler


def refusal(index: int, name: str, status: int, key: str) -> RawResponse:
    """
    Lambda's answer for one row, naming the error in one of the ways AWS does.

    The forms rotate so every row is checked and every form is used often:
    the header as is, with a ``:`` suffix, with a ``#`` prefix, and no
    header but ``__type`` or ``code`` in the body.
    """
    document: dict[str, Any] = {"Type": "User", key: f"why {name} happened"}
    headers = {"x-amzn-RequestId": f"aws-req-{index}"}
    form = index % 5
    if form == 0:
        headers["x-amzn-ErrorType"] = name
    elif form == 1:
        headers["x-amzn-ErrorType"] = f"{name}:http://internal.amazon.com/coral/com.amazon/"
    elif form == 2:
        headers["x-amzn-ErrorType"] = f"com.amazonaws.lambda#{name}"
    elif form == 3:
        document["__type"] = f"com.amazonaws.lambda#{name}"
    else:
        document["code"] = name
    if status == 429:
        headers["Retry-After"] = "3"
    return RawResponse(status, json.dumps(document).encode(), headers)


class ErrorTableTests(SynchronousTestCase):
    """
    Each row of Lambda's error table maps to the gateway's contract.
    """

    def check_rows(self, rows: list[tuple[str, int, str, int]]) -> None:
        for index, (name, status, key, expected) in enumerate(rows):
            answer = refusal(index, name, status, key)
            gw = FakeAWSGateway(ROUTES, {"fn": answering(answer)})
            with capturedLogs() as events:
                d = gw.client.post("http://gw/lambda/fn", data=b"{}")
                gw.flush()
                response = self.successResultOf(d)
                body = json.loads(self.successResultOf(response.content()))
            self.assertEqual(response.code, expected, name)
            self.assertEqual(body["error"], CLIENT_MESSAGES[expected], name)
            self.assertNotIn(name, json.dumps(body))
            retry_after = response.headers.getRawHeaders("retry-after")
            if expected == 503:
                # Lambda's Retry-After when it sent one, else the gateway's default.
                self.assertEqual(retry_after, ["3" if status == 429 else "1"], name)
            else:
                self.assertIsNone(retry_after, name)
            [logged] = [e for e in events if e.get("code") is not None]
            self.assertEqual(logged["code"], name)
            self.assertEqual(logged["status"], status)
            self.assertEqual(logged["error_message"], f"why {name} happened")
            self.assertEqual(logged["aws_request_id"], f"aws-req-{index}")
            self.assertEqual(logged["request_id"], body["request_id"])
            self.assertEqual(len(gw.lambda_api.calls), 1, f"{name} was retried")

    def test_lambda_model_errors(self) -> None:
        """
        Every Invoke error in Lambda's model: 413s stay 413, throttling is 503, the rest 502.
        """
        self.check_rows(LAMBDA_ERRORS)

    def test_generic_aws_errors(self) -> None:
        """
        AWS's own auth and size errors, and unknown names: 413 by status, else 502.
        """
        self.check_rows(GENERIC_ERRORS)

    def test_clock_skew_is_logged_as_an_error(self) -> None:
        """
        A signature AWS finds too old is a 502 and an error-level line about the clock.
        """
        for name, message in [
            (
                "InvalidSignatureException",
                "Signature expired: 20261125T010000Z is now earlier than 20261125T010500Z",
            ),
            ("InvalidSignatureException", "Signature not yet current: 20261125T020000Z"),
            ("RequestTimeTooSkewed", "The difference between the request time and now is large"),
        ]:
            answer = RawResponse(
                403, json.dumps({"message": message}).encode(), {"x-amzn-ErrorType": name}
            )
            gw = FakeAWSGateway(ROUTES, {"fn": answering(answer)})
            with capturedLogs() as events:
                d = gw.client.get("http://gw/lambda/fn")
                gw.flush()
                response = self.successResultOf(d)
            self.assertEqual(response.code, 502)
            [logged] = [e for e in events if e.get("code") == name]
            self.assertEqual(logged["log_level"], LogLevel.error)
            self.assertIn("clock", logged["log_format"])
            self.assertEqual(logged["error_message"], message)

    def test_not_json_error_body(self) -> None:
        """
        An error with an HTML body and no error type is still a 502 named by its status.
        """

        def html(event: Any, context: FakeContext) -> RawResponse:
            return RawResponse(500, b"<html>oops</html>")

        gw = FakeAWSGateway(ROUTES, {"fn": html})
        with capturedLogs() as events:
            d = gw.client.get("http://gw/lambda/fn")
            gw.flush()
            response = self.successResultOf(d)
        self.assertEqual(response.code, 502)
        [logged] = [e for e in events if e.get("code") is not None]
        self.assertEqual((logged["code"], logged["error_message"]), ("500", ""))


class ErrorCodeTests(SynchronousTestCase):
    """
    The error code is found the way botocore finds it.
    """

    def test_header_before_body(self) -> None:
        """
        x-amzn-ErrorType wins over the body's __type and code.
        """
        headers = Headers({b"x-amzn-ErrorType": [b"FromHeader"]})
        self.assertEqual(error_code(headers, {"__type": "A", "code": "B"}, 400), "FromHeader")

    def test_colon_and_hash(self) -> None:
        """
        The part before the first ':' and after the last '#'.
        """
        headers = Headers({b"x-amzn-ErrorType": [b"a#b#Name:http://x:y"]})
        self.assertEqual(error_code(headers, None, 400), "Name")

    def test_body_then_status(self) -> None:
        """
        __type, then code or Code, then the status as text.
        """
        self.assertEqual(error_code(Headers(), {"__type": "x#T", "code": "C"}, 400), "T")
        self.assertEqual(error_code(Headers(), {"Code": "C"}, 400), "C")
        self.assertEqual(error_code(Headers(), {"code": ""}, 418), "418")
        self.assertEqual(error_code(Headers(), ["not", "a", "dict"], 500), "500")
