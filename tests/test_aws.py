"""
The AWS invoker: the request it sends is the one botocore sends, and the
answers Lambda gives map onto the gateway's errors.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent

from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.invokers.aws.invoker import (
    AWSInvoker,
    CredentialSource,
    error_code,
    invoke_url,
)
from twisted_lambdagw.invokers.base import InvokeCall
from twisted_lambdagw.testing import FakeLambda

from .loopback import real_reactor

ENDPOINT = "https://lambda.us-west-2.amazonaws.com"


class _Raw:
    def stream(self, **kwargs: Any) -> Any:
        return iter([b"{}"])


def botocore_request(
    function: str, qualifier: str | None, payload: bytes, token: str | None
) -> Any:
    """
    What a real botocore Lambda client sends for one Invoke, captured before
    it reaches the network.
    """
    session = botocore.session.Session()
    client = session.create_client(
        "lambda",
        region_name="us-west-2",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
    )
    captured: list[Any] = []

    def capture(request: Any, **kwargs: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _Raw())

    client.meta.events.register("before-send.lambda.Invoke", capture)
    kwargs: dict[str, Any] = {
        "FunctionName": function,
        "Payload": payload,
        "InvocationType": "RequestResponse",
    }
    if qualifier is not None:
        kwargs["Qualifier"] = qualifier
    client.invoke(**kwargs)
    return captured[0]


class SignatureTests(SynchronousTestCase):
    """
    The gateway's Invoke request is byte-for-byte what botocore's client sends.
    """

    def check(
        self, function: str, qualifier: str | None, payload: bytes, token: str | None
    ) -> None:
        expected = botocore_request(function, qualifier, payload, token)
        amz_date = expected.headers["X-Amz-Date"].decode()
        when = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        api = FakeLambda({})
        credentials = CredentialSource.from_keys(
            "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
        )
        invoker = AWSInvoker(StubTreq(api), credentials, "us-west-2", ENDPOINT, now=lambda: when)
        call = InvokeCall(function=function, payload=payload, qualifier=qualifier)
        self.failureResultOf(Deferred.fromCoroutine(invoker.invoke(call)), InvokeFailed)
        [sent] = api.calls
        query = "?" + expected.url.partition("?")[2] if "?" in expected.url else ""
        self.assertEqual(ENDPOINT + sent.path + query, expected.url)
        self.assertEqual(sent.headers["authorization"], expected.headers["Authorization"].decode())
        self.assertEqual(sent.headers["x-amz-date"], amz_date)
        self.assertEqual(sent.body, payload)
        if token:
            self.assertEqual(sent.headers["x-amz-security-token"], token)

    def test_plain_name(self) -> None:
        """
        A plain name, no qualifier.
        """
        self.check("hello", None, b'{"a": 1}', None)

    def test_qualifier_and_session_token(self) -> None:
        """
        A qualifier in the query, temporary credentials.
        """
        self.check("hello", "prod", b'{"type": "HTTPJSON-REQ"}', "FQoGZXIvYXdzEXAMPLETOKEN")

    def test_arn_with_latest(self) -> None:
        """
        A full ARN as the name, with $LATEST: both percent-encoded as botocore does.
        """
        self.check(
            "arn:aws:lambda:us-west-2:123456789012:function:my-function", "$LATEST", b"{}", None
        )

    def test_url_encoding(self) -> None:
        """
        ':' in names and '$' in qualifiers are encoded.
        """
        self.assertEqual(
            invoke_url("https://x", "arn:aws:lambda:r:1:function:f", "$LATEST"),
            "https://x/2015-03-31/functions/arn%3Aaws%3Alambda%3Ar%3A1%3Afunction%3Af"
            "/invocations?Qualifier=%24LATEST",
        )


class ErrorCodeTests(SynchronousTestCase):
    """
    Error codes are derived the way botocore derives them.
    """

    def test_header_wins_and_is_trimmed(self) -> None:
        """
        The x-amzn-ErrorType header, cut at ':' and after '#'.
        """
        from twisted.web.http_headers import Headers

        headers = Headers({b"x-amzn-ErrorType": [b"aws#ThrottlingException:http://internal/x"]})
        self.assertEqual(error_code(headers, {"__type": "Other"}, 400), "ThrottlingException")
        self.assertEqual(error_code(Headers(), {"__type": "a#Other"}, 400), "Other")
        self.assertEqual(error_code(Headers(), {"code": "Coded"}, 400), "Coded")
        self.assertEqual(error_code(Headers(), None, 418), "418")


class CredentialChainTests(SynchronousTestCase):
    """
    The default chain is resolved once, off the reactor thread.
    """

    def test_resolved_once_in_a_thread(self) -> None:
        """
        Concurrent first calls share one lookup, run through the thread runner.
        """
        threads: list[Deferred[Any]] = []

        def run_in_thread(f: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            threads.append(d)
            d.addCallback(lambda _: f())
            return d

        source = CredentialSource(run_in_thread, resolve=lambda: Credentials("AK", "SK", "TK"))
        first = Deferred.fromCoroutine(source.frozen())
        second = Deferred.fromCoroutine(source.frozen())
        self.assertNoResult(first)
        self.assertEqual(len(threads), 1)
        threads[0].callback(None)
        self.assertEqual(self.successResultOf(first).access_key, "AK")
        self.assertEqual(self.successResultOf(second).token, "TK")
        self.successResultOf(Deferred.fromCoroutine(source.frozen()))
        self.assertEqual(len(threads), 1)

    def test_no_credentials_fails_the_call(self) -> None:
        """
        With nothing in the chain a call fails as an invoke failure (502).
        """
        source = CredentialSource(lambda f: succeed(f()), resolve=lambda: None)
        self.failureResultOf(Deferred.fromCoroutine(source.frozen()), InvokeFailed)


class ConnectionFailureTests(TestCase):
    """
    Network failures reaching Lambda are invoke failures, on real sockets.
    """

    async def test_connection_refused(self) -> None:
        """
        A closed port is a 502-class failure, not a crash or a hang.
        """
        reactor = real_reactor()
        port = reactor.listenTCP(0, ServerFactory(), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        invoker = AWSInvoker(
            HTTPClient(Agent(reactor)),
            CredentialSource.from_keys("AK", "SK"),
            "us-west-2",
            f"http://127.0.0.1:{number}",
            now=Clock().seconds,
        )
        with self.assertRaises(InvokeFailed) as raised:
            await Deferred.fromCoroutine(invoker.invoke(InvokeCall("fn", b"{}")))
        self.assertIn("refused", raised.exception.detail.lower())

    async def test_reset_mid_response(self) -> None:
        """
        A connection dropped in the middle of a response is an invoke failure.
        """
        reactor = real_reactor()

        class HalfAnswer(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
                self.transport.loseConnection()

        port = reactor.listenTCP(0, ServerFactory.forProtocol(HalfAnswer), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        invoker = AWSInvoker(
            HTTPClient(Agent(reactor)),
            CredentialSource.from_keys("AK", "SK"),
            "us-west-2",
            f"http://127.0.0.1:{port.getHost().port}",
        )
        with self.assertRaises(InvokeFailed):
            await Deferred.fromCoroutine(invoker.invoke(InvokeCall("fn", b"{}")))
