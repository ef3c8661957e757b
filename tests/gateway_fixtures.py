"""
Builders for gateways under test: real config text, real resource, fakes
only where Lambda would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock

from tests.typed import as_client, as_reactor
from twisted_lambdagw.core.config import Config
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.gateway import Gateway
from twisted_lambdagw.testing import FakeLambda, Handler

FAKE_ENDPOINT = "http://lambda.fake"
ACCESS_KEY = "AKIDEXAMPLEFAKEKEY01"
SECRET_KEY = "fake-secret-key-for-tests-only-0123456789"

BASE_CONFIG = f"""
[aws]
region = us-west-2
access_key_id = {ACCESS_KEY}
secret_access_key = {SECRET_KEY}
endpoint_url = {FAKE_ENDPOINT}
"""


def config_from(text: str, environ: Mapping[str, str] | None = None) -> Config:
    """
    A config from INI text, with a clean environment and no profile lookups.
    """
    return parse_config(text, "test.ini", environ or {}, lambda profile, env: None)


class FakeAWSGateway:
    """
    The real gateway, talking to a L{FakeLambda} through the real AWSInvoker.

    ``client`` drives the gateway's resource through a real Site; ``clock``
    is the gateway's time, for timeouts.  ``gateway_kwargs`` go to the
    L{Gateway} (a thread runner for bcrypt, for instance).
    """

    def __init__(
        self,
        routes: str,
        functions: Mapping[str, Handler] | None = None,
        base: str = BASE_CONFIG,
        **gateway_kwargs: Any,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.lambda_api = FakeLambda(functions)
        self.lambda_client = StubTreq(self.lambda_api)
        self.config = config_from(base + routes)
        self.gateway = Gateway(
            self.config,
            as_reactor(self.clock),
            client=as_client(self.lambda_client),
            endpoint_for=lambda spec: spec.url or f"https://lambda.{spec.region}.amazonaws.com",
            **gateway_kwargs,
        )
        self.client: Any = StubTreq(self.gateway.resource)

    def flush(self) -> None:
        """
        Deliver everything pending between client, gateway and fake Lambda,
        with the reactor's turns between (calls due now run).
        """
        for _ in range(3):
            self.lambda_client.flush()
            self.client.flush()
            self.clock.advance(0)
