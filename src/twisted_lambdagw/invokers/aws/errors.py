"""
What a refused Invoke call means, for the client and for the retry logic.

Lambda's error table (research/lambda-protocol.md §1.5) boils down to a few
outcomes at the gateway: a payload Lambda finds too large is the client's
413, throttling is a 503 the client may retry after ``Retry-After``, and
everything else (bad configuration, missing function, broken deployment,
Lambda faults) is a 502: not the client's doing.  The error's name decides
only where the status alone would not: a 413 by any name is a 413, and
``EC2ThrottledException`` (a 502 from Lambda) is throttling all the same.

Two refusals are special because they say the call never reached the
function and something on this side is wrong: an expired session token
(refresh and try once more) and a signing time AWS finds too far off (the
host's clock; retrying cannot help).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.web.http_headers import Headers

from twisted_lambdagw.core.errors import GatewayError, InvokeFailed, PayloadTooLarge, Throttled
from twisted_lambdagw.net.headers import raw_values

TOO_LARGE = frozenset(
    {
        "RequestTooLargeException",
        "SerializedRequestEntityTooLargeException",
        "RequestEntityTooLargeException",
    }
)
THROTTLED = frozenset(
    {"TooManyRequestsException", "EC2ThrottledException", "ThrottlingException", "Throttling"}
)
EXPIRED_TOKEN = frozenset({"ExpiredTokenException", "ExpiredToken"})
CLOCK_SKEW = frozenset({"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"})
SKEW_MESSAGES = ("Signature expired", "Signature not yet current")


def error_code(headers: Headers, document: object, status: int) -> str:
    """
    The AWS error code of a failed call, derived as botocore derives it.

    The ``x-amzn-ErrorType`` header first, then ``__type``/``code`` in the
    body, then the status; the part before the first ``:`` and after the
    last ``#`` is the code.
    """
    raw: object = None
    values = headers.getRawHeaders(b"x-amzn-errortype")
    if values:
        raw = values[0].decode("latin-1")
    elif isinstance(document, dict):
        raw = document.get("__type") or document.get("code") or document.get("Code")
    if not isinstance(raw, str) or not raw:
        return str(status)
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def error_message(document: object) -> str:
    """
    The message of an AWS error body, under either of its spellings.
    """
    if isinstance(document, dict):
        for key in ("Message", "message", "errorMessage"):
            value = document.get(key)
            if isinstance(value, str):
                return value
    return ""


def header(headers: Headers, name: bytes) -> str | None:
    """
    The last value of the header C{name} (lower-case), as text, or None.
    """
    values = raw_values(headers, name)
    return values[-1].decode("latin-1") if values else None


@dataclass(frozen=True, slots=True)
class Refusal:
    """
    One non-2xx answer from the Invoke API, classified.
    """

    status: int
    code: str
    message: str
    aws_request_id: str | None = None
    retry_after: str | None = None
    """``Retry-After`` as sent, when it is a number of seconds."""

    @classmethod
    def parse(cls, status: int, headers: Headers, body: bytes) -> Refusal:
        try:
            document: object = json.loads(body) if body else None
        except ValueError:
            document = None
        retry_after = header(headers, b"retry-after")
        if retry_after is not None and not retry_after.strip().isdigit():
            retry_after = None
        return cls(
            status=status,
            code=error_code(headers, document, status),
            message=error_message(document),
            aws_request_id=header(headers, b"x-amzn-requestid"),
            retry_after=retry_after.strip() if retry_after is not None else None,
        )

    @property
    def expired_token(self) -> bool:
        """
        The call was signed with expired temporary credentials.
        """
        return self.code in EXPIRED_TOKEN

    @property
    def clock_skew(self) -> bool:
        """
        AWS refused the signing time: this host's clock is off.
        """
        return self.code in CLOCK_SKEW or any(m in self.message for m in SKEW_MESSAGES)

    @property
    def retryable(self) -> bool:
        """
        Worth another try for a call that may safely run twice.
        """
        return self.status == 429 or self.status >= 500 or self.code in THROTTLED

    def error(self) -> GatewayError:
        """
        The gateway error the client gets for this refusal.
        """
        detail = f"{self.status} {self.code}: {self.message}"
        if self.status == 413 or self.code in TOO_LARGE:
            return PayloadTooLarge(
                detail=detail, code=self.code, aws_request_id=self.aws_request_id
            )
        if self.status == 429 or self.code in THROTTLED:
            return Throttled(
                detail=detail,
                code=self.code,
                aws_request_id=self.aws_request_id,
                retry_after=self.retry_after,
            )
        return InvokeFailed(detail=detail, code=self.code, aws_request_id=self.aws_request_id)
