"""
Failures the gateway answers for itself, each with the HTTP status it means.

Everything that can go wrong between the client and the function is one of
these, so the resource has a single place that turns a failure into a status
and a JSON error body.  The message is what the client sees: it never holds a
function's error details, a stack trace or anything from AWS credentials.
"""

from __future__ import annotations


class GatewayError(Exception):
    """
    A failure with the status the client gets and a short message for it.
    """

    status = 500
    message = "internal gateway error"

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        if message is not None:
            self.message = message
        self.detail = detail
        """What went wrong in full, for the log only."""
        super().__init__(self.message)

    def response_headers(self) -> list[tuple[str, str]]:
        """
        Extra headers the error response carries.
        """
        return []


class BadRequest(GatewayError):
    status = 400
    message = "bad request"


class _Challenging(GatewayError):
    """
    A refusal that may tell the client how to authenticate: C{challenge} is
    the C{WWW-Authenticate} value (C{Basic realm="lambdagw"},
    C{Bearer error="insufficient_scope"}...), sent when given.
    """

    def __init__(
        self, message: str | None = None, *, detail: str = "", challenge: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.challenge = challenge

    def response_headers(self) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", self.challenge)] if self.challenge else []


class Unauthorized(_Challenging):
    """
    No valid login for a route that needs one: a 401 with its challenge.
    """

    status = 401
    message = "authentication required"


class NotFound(GatewayError):
    status = 404
    message = "no such function"


class URITooLong(GatewayError):
    status = 414
    message = "request URI too long"


class RequestTooLarge(GatewayError):
    status = 413
    message = "request body too large"


class InvokeFailed(GatewayError):
    """
    Lambda could not be reached or refused the call: a 502.

    C{code} is the AWS error code (C{x-amzn-ErrorType}) when there is one,
    for logs and metrics.
    """

    status = 502
    message = "function invocation failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str = "",
        code: str | None = None,
        aws_request_id: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.code = code
        self.aws_request_id = aws_request_id


class FunctionFailed(GatewayError):
    """
    The function ran and reported an error: a 502, details only in the log.
    """

    status = 502
    message = "function error"


class MalformedReply(GatewayError):
    """
    The function answered with something that is not a valid reply: a 502.
    """

    status = 502
    message = "malformed function reply"


class Throttled(InvokeFailed):
    """
    Lambda throttled the call, or the gateway is at capacity: a 503.
    """

    status = 503
    message = "function throttled"

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str = "",
        code: str | None = None,
        aws_request_id: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail, code=code, aws_request_id=aws_request_id)
        self.retry_after = retry_after

    def response_headers(self) -> list[tuple[str, str]]:
        return [("Retry-After", self.retry_after or "1")]


class PayloadTooLarge(InvokeFailed):
    """
    Lambda refused the payload as too large: a 413.
    """

    status = 413
    message = "request too large for the function"


class InvokeTimeout(GatewayError):
    """
    The function did not answer within the route's timeout: a 504.
    """

    status = 504
    message = "function timed out"


class Forbidden(_Challenging):
    """
    The request is understood and refused: a 403 (a CORS preflight from an
    origin or for a method the route does not allow, an authorizer that says
    no, a token without the scope), with its challenge if any.
    """

    status = 403
    message = "forbidden"


class AuthorizerFailed(GatewayError):
    """
    An authorizer could not decide (its function failed, timed out or
    answered nonsense, or no JWKS was ever fetched): a 500, the cause logged.
    """

    status = 500
    message = "authorizer failed"


class _RetryLater(GatewayError):
    """
    A refusal with C{Retry-After}: C{retry_after} whole seconds, at least 1.
    """

    def __init__(
        self, message: str | None = None, *, detail: str = "", retry_after: int = 1
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)

    def response_headers(self) -> list[tuple[str, str]]:
        return [("Retry-After", str(self.retry_after))]


class TooManyRequests(_RetryLater):
    """
    Over a route's rate limit or quota: a 429 with C{Retry-After}.

    C{retry_after} is whole seconds, at least 1: when the client may try
    again with a chance of being admitted.
    """

    status = 429
    message = "too many requests"


class ServiceUnavailable(_RetryLater):
    """
    The gateway cannot serve the request now (a store it needs is down): a 503.
    """

    status = 503
    message = "service unavailable"
