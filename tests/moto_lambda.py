"""A real, independently written Lambda API for integration tests: moto in server mode.

The gateway's fakes are written by us, so they share our reading of the protocol. moto is
written by other people and checks every SigV4 signature (body hash included) once its
unauthenticated window is used up, so a test against it catches signing mistakes a fake of our
own would agree with.

`MotoLambdaServer.start()` starts ``python -m moto.server`` on a free loopback port with a
clean environment and ``INITIAL_NO_AUTH_ACTION_COUNT`` set to the exact number of provisioning
calls, waits until it answers, then creates an IAM user with an access key allowed to invoke,
a role and one function. After that every request must be signed with that user's key.

What moto does that a gateway test needs to know (moto 5.2, checked by running it):

- With no Docker daemon, every invoke of an existing function is a 200 with
  ``X-Amz-Function-Error: Handled``, ``Content-Type: application/json`` and a plain-text body
  starting with `DOCKERLESS_BODY_PREFIX`. The server's ``DOCKER_HOST`` points at a socket that
  does not exist, so this holds even on a machine that runs Docker.
- With ``simple=True`` moto uses its Docker-free backend instead: an invoke is a 200 without a
  function error whose payload is the request body, or the next result queued with
  `MotoLambdaServer.queue_results`. That backend does not look the function up: a missing
  function is answered the same way, so 404 tests need the default backend.
- An unknown qualifier (``?Qualifier=prod`` with no such alias) is not an error in either
  backend; the function is invoked as if it were ``$LATEST``.
- moto checks the action ``lambda:Invoke`` (the operation name), not ``lambda:InvokeFunction``
  as AWS does, so the policy allows both.
- A body sent as ``application/x-www-form-urlencoded`` (what ``urllib.request`` adds when no
  Content-Type is given) is parsed as a form by moto's web layer, and the signature check then
  fails. botocore sends no Content-Type for Invoke; neither should a raw test client.

- moto counts only calls that reach its IAM check toward ``INITIAL_NO_AUTH_ACTION_COUNT``;
  its own ``/moto-api/`` endpoints (readiness probe, simple-mode switch, queued results) are
  always open and do not use up the window.

Blocking code, meant for test setup: call it from ``setUp``/``setUpClass`` before the
reactor-driven part of a test, never from inside the reactor. Typical uses::

    def setUp(self) -> None:
        self.moto = shared_moto_lambda().info          # one server for the whole run

    def setUp(self) -> None:
        server = MotoLambdaServer(simple=True)          # a server of this test's own
        self.moto = server.start()
        self.addCleanup(server.stop)
"""

from __future__ import annotations

import atexit
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

import botocore.session
from botocore.config import Config

DOCKERLESS_BODY_PREFIX = b"error running docker: "
"""How moto's payload starts when it cannot reach Docker to run a function."""

PROVISIONING_CALLS = 8
"""create_user, create_access_key, create_policy, attach_user_policy, create_role (the
function's), create_role and attach_role_policy (the role the key may assume),
create_function: moto lets exactly this many calls through unauthenticated."""

_PROVISIONING_KEY_ID = "AKIAPROVISIONING0000"
_PROVISIONING_SECRET = "provisioning-secret-not-valid-after-setup"
_NO_DOCKER = "unix:///nonexistent-lambdagw-test/docker.sock"
_HANDLER_SOURCE = "def handler(event, context):\n    return event\n"

_INVOKE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction", "lambda:Invoke"],
            "Resource": "*",
        },
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
    ],
}
_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class MotoLambda:
    """Where the provisioned Lambda API listens and the key that may invoke its function."""

    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    function_name: str
    function_arn: str
    role_arn: str
    """A role the key may assume (its trust policy names the key's user) that may invoke."""

    def client(
        self,
        service: str = "lambda",
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> Any:
        """A botocore client for this server, by default signing with the invoker's key."""
        return isolated_client(
            service,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=access_key_id or self.access_key_id,
            secret_access_key=secret_access_key or self.secret_access_key,
        )


def isolated_client(
    service: str,
    *,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
) -> Any:
    """A botocore client that reads no profile, config file or proxy from the environment.

    One try per call: a retried provisioning call would use up the unauthenticated window
    twice, and a test wants to see the first answer.
    """
    session = botocore.session.Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    return session.create_client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(proxies={}, retries={"total_max_attempts": 1}),
    )


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def server_environment() -> dict[str, str]:
    """The whole environment of the moto process, built from nothing.

    Nothing is inherited, so no real AWS credentials, profile or proxy setting reaches it.
    """
    return {
        "INITIAL_NO_AUTH_ACTION_COUNT": str(PROVISIONING_CALLS),
        "DOCKER_HOST": _NO_DOCKER,
        "PYTHONUNBUFFERED": "1",
    }


def function_zip() -> bytes:
    """A deployment package with one trivial handler, built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", _HANDLER_SOURCE)
    return buffer.getvalue()


class MotoLambdaServer:
    """One moto server process with a provisioned function; `start` it, then `stop` it.

    Usable as a context manager, from ``setUp`` with ``addCleanup(server.stop)``, or shared by
    many tests through `shared_moto_lambda`.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        function_name: str = "hello",
        simple: bool = False,
        startup_timeout: float = 15.0,
        pickPort: Callable[[], int] = free_loopback_port,
    ) -> None:
        self.region = region
        self.function_name = function_name
        self.simple = simple
        self.startup_timeout = startup_timeout
        self._pickPort = pickPort
        self.startup_seconds: float | None = None
        """Seconds from spawning the process to a provisioned function, for reports."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lambda: MotoLambda | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def info(self) -> MotoLambda:
        """The provisioned endpoint and key; only after `start`."""
        if self._lambda is None:
            raise RuntimeError("moto server is not running")
        return self._lambda

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The server process, while there is one."""
        return self._process

    def start(self) -> MotoLambda:
        """Start the server, provision the function, and say where it is."""
        if self._lambda is not None:
            return self._lambda
        began = time.monotonic()
        endpoint_url = self._spawn()
        try:
            if self.simple:
                self._post_json(
                    endpoint_url + "/moto-api/config", {"lambda": {"use_docker": False}}
                )
            self._lambda = self._provision(endpoint_url)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self._lambda

    def stop(self) -> None:
        """Terminate the server and wait for it; safe to call twice."""
        process, self._process = self._process, None
        self._lambda = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def log_text(self) -> str:
        """What the server printed so far (its request log), to explain a failure."""
        if self._log is None:
            return ""
        with open(self._log.name, "rb") as reader:
            return reader.read().decode("utf-8", "replace")

    def queue_results(self, results: list[str]) -> None:
        """In simple mode, make the next invokes return these payloads, in order."""
        if not self.simple:
            raise RuntimeError("queued results need MotoLambdaServer(simple=True)")
        self._post_json(
            self.info.endpoint_url + "/moto-api/static/lambda-simple/response",
            {"results": results, "region": self.region},
        )

    def __enter__(self) -> MotoLambda:
        return self.start()

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self) -> str:
        """Start the process on a free port and wait until it answers HTTP.

        Another process may take the port between the probe and moto's bind; then moto exits
        at once and we try another port. A server that is still silent at the deadline is not
        retried.
        """
        output = ""
        for _attempt in range(3):
            port = self._pickPort()
            self._log = tempfile.NamedTemporaryFile(prefix="moto-server-", suffix=".log")  # noqa: SIM115
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                env=server_environment(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            endpoint_url = f"http://127.0.0.1:{port}"
            answering = self._wait_until_answering(endpoint_url)
            if answering:
                return endpoint_url
            exited = self._process.poll() is not None
            output = self.log_text()
            self.stop()
            if not exited:
                raise RuntimeError(
                    f"moto server did not answer within {self.startup_timeout}s:\n{output}"
                )
        raise RuntimeError(f"moto server exited at startup three times; last output:\n{output}")

    def _wait_until_answering(self, endpoint_url: str) -> bool:
        """Poll until the server answers (True), exits, or the deadline passes (False)."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with self._opener.open(endpoint_url + "/moto-api/", timeout=1) as response:
                    response.read()
                return True
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        return False

    def _post_json(self, url: str, document: Mapping[str, object]) -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(document).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with self._opener.open(request, timeout=5) as response:
            response.read()

    def _provision(self, endpoint_url: str) -> MotoLambda:
        """Make the user, key, policy, role and function, counting every call sent."""
        sent: list[str] = []

        def provisioningClient(service: str) -> Any:
            client = isolated_client(
                service,
                endpoint_url=endpoint_url,
                region=self.region,
                access_key_id=_PROVISIONING_KEY_ID,
                secret_access_key=_PROVISIONING_SECRET,
            )
            client.meta.events.register(
                "before-send", lambda request, **_: sent.append(request.url)
            )
            return client

        iam = provisioningClient("iam")
        lam = provisioningClient("lambda")
        userName = "lambdagw-invoker"
        user = iam.create_user(UserName=userName)["User"]
        key = iam.create_access_key(UserName=userName)["AccessKey"]
        policy = iam.create_policy(
            PolicyName="lambdagw-invoke", PolicyDocument=json.dumps(_INVOKE_POLICY)
        )
        iam.attach_user_policy(UserName=userName, PolicyArn=policy["Policy"]["Arn"])
        role = iam.create_role(
            RoleName="lambdagw-function", AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST)
        )
        # moto checks a role's trust policy on AssumeRole: this one trusts the user.
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": "sts:AssumeRole"}
            ],
        }
        assumed = iam.create_role(
            RoleName="lambdagw-invoker-role", AssumeRolePolicyDocument=json.dumps(trust)
        )
        iam.attach_role_policy(RoleName="lambdagw-invoker-role", PolicyArn=policy["Policy"]["Arn"])
        function = lam.create_function(
            FunctionName=self.function_name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="index.handler",
            Code={"ZipFile": function_zip()},
        )
        if len(sent) != PROVISIONING_CALLS:
            raise RuntimeError(
                f"provisioning sent {len(sent)} calls, the window allows {PROVISIONING_CALLS}"
            )
        return MotoLambda(
            endpoint_url=endpoint_url,
            region=self.region,
            access_key_id=key["AccessKeyId"],
            secret_access_key=key["SecretAccessKey"],
            function_name=self.function_name,
            function_arn=function["FunctionArn"],
            role_arn=assumed["Role"]["Arn"],
        )


_shared: dict[bool, MotoLambdaServer] = {}


def shared_moto_lambda(*, simple: bool = False) -> MotoLambdaServer:
    """A started server shared by every test in this process, stopped when it exits.

    Starting and provisioning take about a second (1.1-1.2 s measured on 2 cores), so tests
    that only invoke share one. A test that changes the server's state (`queue_results`)
    should consume what it changed, or use a server of its own.
    """
    server = _shared.get(simple)
    if server is None:
        server = MotoLambdaServer(simple=simple)
        _shared[simple] = server
        atexit.register(server.stop)
    server.start()
    return server
