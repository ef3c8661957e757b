"""What moto's Lambda API answers, seen raw and through botocore, before our gateway is involved.

These tests pin down the behaviour the gateway's integration tests rely on: moto checks the
signature (body and query included) once provisioning is done, and answers the three cases the
gateway must turn into 502s with the statuses, headers and bodies asserted here.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.moto_lambda import (
    DOCKERLESS_BODY_PREFIX,
    MotoLambda,
    MotoLambdaServer,
    free_loopback_port,
    shared_moto_lambda,
)

PAYLOAD = b'{"type": "HTTPJSON-REQ", "ping": 1}'


@dataclass(frozen=True)
class RawResponse:
    """Status, headers and body exactly as they came off the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of a header, whatever its case; None when it is absent."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def xmlError(self) -> tuple[str | None, str | None]:
        """The Code and Type of moto's XML error document."""
        root = ElementTree.fromstring(self.body)
        return root.findtext("Errors/Error/Code"), root.findtext("Errors/Error/Type")


def signedInvoke(
    moto: MotoLambda,
    *,
    functionName: str | None = None,
    accessKeyId: str | None = None,
    secret: str | None = None,
    body: bytes = PAYLOAD,
    sentBody: bytes | None = None,
    query: str = "",
) -> RawResponse:
    """POST an Invoke signed by botocore's SigV4Auth, over http.client.

    http.client adds only Host and Accept-Encoding, so moto sees what botocore signed (urllib
    would add a form Content-Type, which moto's web layer parses away before hashing the body).
    ``sentBody`` replaces the body after signing.
    """
    path = f"/2015-03-31/functions/{functionName or moto.function_name}/invocations{query}"
    request = AWSRequest(method="POST", url=moto.endpoint_url + path, data=body)
    credentials = Credentials(accessKeyId or moto.access_key_id, secret or moto.secret_access_key)
    SigV4Auth(credentials, "lambda", moto.region).add_auth(request)
    endpoint = urlsplit(moto.endpoint_url)
    assert endpoint.hostname is not None and endpoint.port is not None
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=body if sentBody is None else sentBody,
            headers=dict(request.headers.items()),
        )
        response = connection.getresponse()
        return RawResponse(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


class DockerlessInvokeTests(SynchronousTestCase):
    """moto's default Lambda backend, with no Docker daemon to run functions."""

    def setUp(self) -> None:
        self.moto = shared_moto_lambda().info

    def test_signedInvokeIsHandledFunctionError(self) -> None:
        """A correctly signed invoke is a 200 with a Handled function error and a text body."""
        response = signedInvoke(self.moto)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("X-Amz-Function-Error"), "Handled")
        self.assertEqual(response.header("Content-Type"), "application/json")
        self.assertEqual(response.header("Content-Length"), str(len(response.body)))
        self.assertTrue(response.body.startswith(DOCKERLESS_BODY_PREFIX), response.body)
        self.assertRaises(ValueError, json.loads, response.body)

    def test_botocoreSeesTheSameFunctionError(self) -> None:
        """botocore's own Lambda client gets the same 200, Handled and plain-text payload."""
        result = self.moto.client().invoke(FunctionName=self.moto.function_name, Payload=PAYLOAD)
        self.assertEqual(result["StatusCode"], 200)
        self.assertEqual(result["FunctionError"], "Handled")
        self.assertTrue(result["Payload"].read().startswith(DOCKERLESS_BODY_PREFIX))

    def test_wrongSecret(self) -> None:
        """A wrong secret is a 403 SignatureDoesNotMatch, as XML, with no X-Amzn-ErrorType."""
        response = signedInvoke(self.moto, secret="not-the-secret")
        self.assertEqual(response.status, 403)
        self.assertIsNone(response.header("X-Amzn-ErrorType"))
        self.assertIsNone(response.header("X-Amz-Function-Error"))
        self.assertEqual(response.header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(response.xmlError(), ("SignatureDoesNotMatch", "Sender"))

    def test_wrongSecretThroughBotocore(self) -> None:
        """botocore cannot parse that XML error, so it reports the bare status as the code."""
        client = self.moto.client(secret_access_key="not-the-secret")
        with self.assertRaises(ClientError) as caught:
            client.invoke(FunctionName=self.moto.function_name, Payload=PAYLOAD)
        error = caught.exception.response
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertEqual(error["Error"]["Code"], "403")
        self.assertIn("<Code>SignatureDoesNotMatch</Code>", error["Error"]["Message"])

    def test_missingFunction(self) -> None:
        """A missing function is a JSON 404 ResourceNotFoundException, named in a header."""
        response = signedInvoke(self.moto, functionName="no-such-function")
        self.assertEqual(response.status, 404)
        self.assertEqual(response.header("X-Amzn-ErrorType"), "ResourceNotFoundException")
        self.assertEqual(response.header("Content-Type"), "application/json")
        self.assertEqual(
            json.loads(response.body),
            {
                "__type": "ResourceNotFoundException",
                "message": "Function not found: arn:aws:lambda:"
                f"{self.moto.region}:123456789012:function:no-such-function",
            },
        )

    def test_missingFunctionThroughBotocore(self) -> None:
        """botocore's client raises its modelled ResourceNotFoundException."""
        client = self.moto.client()
        with self.assertRaises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName="no-such-function", Payload=PAYLOAD)

    def test_bodyIsSigned(self) -> None:
        """A body changed after signing fails the signature check."""
        response = signedInvoke(self.moto, sentBody=b'{"type": "HTTPJSON-REQ", "ping": 2}')
        self.assertEqual(response.status, 403)
        self.assertEqual(response.xmlError(), ("SignatureDoesNotMatch", "Sender"))

    def test_qualifierIsSigned(self) -> None:
        """A Qualifier query, percent-encoded as botocore does, is accepted when signed."""
        response = signedInvoke(self.moto, query="?Qualifier=%24LATEST")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("X-Amz-Function-Error"), "Handled")

    def test_unknownQualifierIsInvoked(self) -> None:
        """moto does not check that a qualifier names a version or alias."""
        response = signedInvoke(self.moto, query="?Qualifier=prod")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("X-Amz-Function-Error"), "Handled")

    def test_unauthenticatedWindowIsUsedUp(self) -> None:
        """The key used for provisioning is unknown to moto: its free calls are all spent."""
        response = signedInvoke(self.moto, accessKeyId="AKIAPROVISIONING0000", secret="anything")
        self.assertEqual(response.status, 403)
        self.assertEqual(response.xmlError(), ("InvalidClientTokenId", "Sender"))


class SimpleBackendTests(SynchronousTestCase):
    """moto's Docker-free backend, for a successful invoke through a signature check."""

    def setUp(self) -> None:
        self.server = shared_moto_lambda(simple=True)
        self.moto = self.server.info

    def test_invokeEchoesThePayload(self) -> None:
        """A signed invoke is a 200 with no function error whose body is the request body."""
        response = signedInvoke(self.moto)
        self.assertEqual(response.status, 200)
        self.assertIsNone(response.header("X-Amz-Function-Error"))
        self.assertEqual(response.body, PAYLOAD)

    def test_queuedResultsComeFirst(self) -> None:
        """Queued results answer the next invokes in order, then the echo resumes."""
        reply = json.dumps({"type": "HTTPJSON-REP", "meta": {"status": 201}, "body": "made"})
        self.server.queue_results([reply])
        self.assertEqual(signedInvoke(self.moto).body, reply.encode("utf-8"))
        self.assertEqual(signedInvoke(self.moto).body, PAYLOAD)

    def test_missingFunctionIsNotChecked(self) -> None:
        """This backend invokes any name, so it cannot stand in for a 404."""
        response = signedInvoke(self.moto, functionName="no-such-function")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, PAYLOAD)

    def test_wrongSecret(self) -> None:
        """The signature is checked here too."""
        response = signedInvoke(self.moto, secret="not-the-secret")
        self.assertEqual(response.status, 403)
        self.assertEqual(response.xmlError(), ("SignatureDoesNotMatch", "Sender"))


class LifecycleTests(SynchronousTestCase):
    """Starting, isolating and stopping the server process."""

    def test_environmentIsNotInherited(self) -> None:
        """No AWS_* variable of the test process reaches the server."""
        process = shared_moto_lambda().process
        assert process is not None
        environ = Path(f"/proc/{process.pid}/environ")
        if not sys.platform.startswith("linux") or not environ.exists():
            raise self.skipTest("reading another process's environment needs Linux /proc")
        names = {entry.split(b"=", 1)[0] for entry in environ.read_bytes().split(b"\0") if entry}
        self.assertEqual(
            names, {b"INITIAL_NO_AUTH_ACTION_COUNT", b"DOCKER_HOST", b"PYTHONUNBUFFERED"}
        )

    def test_stopEndsTheProcess(self) -> None:
        """Leaving the context ends the process and frees its port."""
        server = MotoLambdaServer(function_name="lifecycle")
        self.addCleanup(server.stop)
        with server as moto:
            process = server.process
            assert process is not None
            self.assertEqual(moto.function_name, "lifecycle")
            self.assertIsNotNone(server.startup_seconds)
        self.assertIsNotNone(process.returncode)
        self.assertIsNone(server.process)
        endpoint = urlsplit(moto.endpoint_url)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((endpoint.hostname, endpoint.port), timeout=2).close()

    def test_takenPortIsRetried(self) -> None:
        """When the probed port is taken before moto binds it, moto starts on another one."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        takenPort = taken.getsockname()[1]
        ports = iter([takenPort, free_loopback_port()])
        server = MotoLambdaServer(pickPort=lambda: next(ports))
        self.addCleanup(server.stop)
        moto = server.start()
        self.assertNotEqual(urlsplit(moto.endpoint_url).port, takenPort)

    def test_notStarted(self) -> None:
        """Asking an unstarted server where it is fails clearly."""
        self.assertRaises(RuntimeError, lambda: MotoLambdaServer().info)
