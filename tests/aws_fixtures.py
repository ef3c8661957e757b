"""
botocore for tests: sessions with no files, no environment, a chain of the test's choosing;
and the check of a recorded Invoke's SigV4 signature.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from twisted_lambdagw.testing import RecordedCall


def isolated_session(provider: Any = None) -> Callable[[str | None], botocore.session.Session]:
    """
    A ``session_for`` whose sessions read no config files and whose
    credential chain is ``provider`` (a botocore CredentialResolver).
    """

    def session_for(profile: str | None) -> botocore.session.Session:
        session = botocore.session.Session(
            session_vars={
                "profile": (None, None, profile, None),
                "config_file": (None, None, "/nonexistent/lambdagw-test/config", None),
                "credentials_file": (None, None, "/nonexistent/lambdagw-test/credentials", None),
            }
        )
        if provider is not None:
            session.register_component("credential_provider", provider)
        return session

    return session_for


AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
    r"/lambda/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)


def signature_checks_out(call: RecordedCall, url: str, secret: str) -> bool:
    """
    Whether the recorded request's SigV4 signature is right for C{secret}.

    botocore recomputes it from what arrived on the wire (the signed
    headers, the body, the URL and the request's own X-Amz-Date), as Lambda
    would.
    """
    match = AUTHORIZATION.fullmatch(call.headers["authorization"])
    if match is None:
        return False
    headers = {name: call.headers[name] for name in match["signed"].split(";")}
    request = AWSRequest(method="POST", url=url, data=call.body, headers=headers)
    request.context["timestamp"] = call.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(match["key"], secret), "lambda", match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return bool(expected == match["sig"])
