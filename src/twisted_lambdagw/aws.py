"""
Lambda's Invoke API over treq, signed by botocore.

botocore does the signing (SigV4) and the endpoint resolution, because those
are the parts AWS changes and botocore tracks; treq does the sending, on the
reactor, through one persistent connection pool.  Nothing here blocks:
credential lookups that may touch the network run in a thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from treq.content import content
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from .aws_stream import EventStreamResponse
from .errors import InvokeFailed, PayloadTooLarge, Throttled
from .invoker import InvokeCall, InvokeResult

T = TypeVar("T")
RunInThread = Callable[[Callable[[], T]], Deferred[T]]

INVOKE_PATH = "/2015-03-31/functions/{}/invocations"
STREAM_PATH = "/2021-11-15/functions/{}/response-streaming-invocations"
_SAFE = "-_.~"


def invoke_url(endpoint: str, function: str, qualifier: str | None, path: str = INVOKE_PATH) -> str:
    """
    The Invoke URL, encoded exactly as botocore encodes it.

    The function name is a URI label: ``:`` in an ARN becomes ``%3A``.  The
    qualifier goes in the query, ``$LATEST`` as ``%24LATEST``.  C{path} is
    L{STREAM_PATH} for InvokeWithResponseStream, which takes the same.
    """
    url = endpoint.rstrip("/") + path.format(quote(function, safe=_SAFE))
    if qualifier:
        url += "?Qualifier=" + quote(qualifier, safe=_SAFE)
    return url


class _TimedSigV4Auth(SigV4Auth):
    """
    botocore's SigV4 signer, with the signing time given rather than read.

    The gateway passes its clock's time in, so tests can sign at a frozen
    moment without patching anything global.
    """

    def __init__(self, credentials: ReadOnlyCredentials, region: str, when: float) -> None:
        super().__init__(credentials, "lambda", region)
        self._when = when

    def add_auth(self, request: AWSRequest) -> None:
        moment = datetime.fromtimestamp(self._when, UTC).replace(tzinfo=None)
        request.context["timestamp"] = moment.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def sign(
    credentials: ReadOnlyCredentials,
    region: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    when: float,
) -> dict[str, str]:
    """
    The headers of a signed ``POST url``: ``headers`` plus the SigV4 ones.

    The URL, method and body sent must be exactly the ones signed.
    """
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    _TimedSigV4Auth(credentials, region, when).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


class CredentialSource:
    """
    Credentials for signing, from static keys or botocore's default chain.

    The chain may probe the instance metadata service or call STS, which is
    blocking network I/O, so it is resolved in a thread once, and refreshed
    in a thread when botocore says it is due.
    """

    log = Logger()

    def __init__(
        self,
        run_in_thread: RunInThread[Any],
        *,
        static: ReadOnlyCredentials | None = None,
        resolve: Callable[[], Credentials | None] | None = None,
    ) -> None:
        self._run_in_thread = run_in_thread
        self._resolve = resolve
        self._credentials: Credentials | None = None
        self._static = static
        self._waiting: list[Deferred[Credentials | None]] | None = None

    @classmethod
    def from_keys(
        cls, access_key: str, secret_key: str, token: str | None = None
    ) -> CredentialSource:
        """
        A source of fixed keys; nothing to resolve, nothing to refresh.
        """

        def no_threads(f: Callable[[], Any]) -> Deferred[Any]:
            raise AssertionError("static credentials never need a thread")

        return cls(no_threads, static=ReadOnlyCredentials(access_key, secret_key, token, None))

    async def frozen(self) -> ReadOnlyCredentials:
        """
        Current credentials; raises L{InvokeFailed} when there are none.
        """
        if self._static is not None:
            return self._static
        credentials = self._credentials
        if credentials is None:
            credentials = await self._resolved()
            if credentials is None:
                raise InvokeFailed(detail="no AWS credentials found in the default chain")
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            frozen: ReadOnlyCredentials = await self._run_in_thread(
                credentials.get_frozen_credentials
            )
            return frozen
        result: ReadOnlyCredentials = credentials.get_frozen_credentials()
        return result

    def _resolved(self) -> Deferred[Credentials | None]:
        waiter: Deferred[Credentials | None] = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]
        assert self._resolve is not None
        lookup: Deferred[Credentials | None] = self._run_in_thread(self._resolve)

        def deliver(result: Any) -> None:
            waiting, self._waiting = self._waiting or [], None
            if isinstance(result, Credentials):
                self._credentials = result
                if getattr(result, "method", None):
                    self.log.info("AWS credentials from {method}", method=result.method)
            elif not isinstance(result, Exception) and result is not None:
                result = None
            for d in waiting:
                if isinstance(result, Exception):
                    d.errback(result)
                else:
                    d.callback(result)

        def failed(failure: Any) -> None:
            self.log.failure("resolving AWS credentials failed", failure)
            deliver(InvokeFailed(detail="resolving AWS credentials failed"))

        lookup.addCallbacks(deliver, failed)
        return waiter


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
    if isinstance(document, dict):
        for key in ("Message", "message", "errorMessage"):
            value = document.get(key)
            if isinstance(value, str):
                return value
    return ""


def _header(headers: Headers, name: bytes) -> str | None:
    values = headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


def is_cancellation(error: BaseException) -> bool:
    """
    Whether a failure from treq was caused by cancelling the request.

    The HTTP client reports a cancelled request wrapped in its own errors;
    the caller needs a plain CancelledError so timeouts and client
    disconnects are told apart from a broken upstream.
    """
    if isinstance(error, CancelledError):
        return True
    reasons = getattr(error, "reasons", None)
    if reasons:
        return any(r.check(CancelledError) is not None for r in reasons)
    return False


class AWSInvoker:
    """
    Invokes functions in one region through Lambda's Invoke API.

    :param client: a treq HTTPClient over a persistent pool, shared by every
        route; the service that owns the pool closes it on shutdown.
    """

    log = Logger()

    def __init__(
        self,
        client: Any,
        credentials: CredentialSource,
        region: str,
        endpoint: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._region = region
        self._endpoint = endpoint
        self._now = now

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        credentials = await self._credentials.frozen()
        url = invoke_url(self._endpoint, call.function, call.qualifier)
        headers: dict[str, str] = {"X-Amz-Invocation-Type": call.invocation_type}
        signed = sign(credentials, self._region, url, call.payload, headers, self._now())
        if call.trace_id:
            signed["X-Amzn-Trace-Id"] = call.trace_id
        try:
            response: IResponse = await self._client.post(
                url, data=call.payload, headers={k: [v] for k, v in signed.items()}
            )
            body: bytes = await content(response)
        except Exception as e:
            if is_cancellation(e):
                raise CancelledError() from None
            raise InvokeFailed(detail=f"calling {call.function}: {_describe(e)}") from None
        return self._result(call, response, body)

    async def invoke_stream(self, call: InvokeCall) -> EventStreamResponse:
        """
        Call InvokeWithResponseStream; return once Lambda has started streaming.

        Refusals (any status but 200) are classified exactly as for Invoke.
        The body is not read here: the caller starts the returned stream.
        """
        credentials = await self._credentials.frozen()
        url = invoke_url(self._endpoint, call.function, call.qualifier, STREAM_PATH)
        headers: dict[str, str] = {"X-Amz-Invocation-Type": "RequestResponse"}
        signed = sign(credentials, self._region, url, call.payload, headers, self._now())
        if call.trace_id:
            signed["X-Amzn-Trace-Id"] = call.trace_id
        try:
            # unbuffered: treq would otherwise keep the whole body in memory.
            response: IResponse = await self._client.post(
                url,
                data=call.payload,
                headers={k: [v] for k, v in signed.items()},
                unbuffered=True,
            )
            if response.code != 200:
                body: bytes = await content(response)
        except Exception as e:
            if is_cancellation(e):
                raise CancelledError() from None
            raise InvokeFailed(detail=f"calling {call.function}: {_describe(e)}") from None
        if response.code != 200:
            self._result(call, response, body)  # raises for every refusal
            raise InvokeFailed(detail=f"{call.function}: streaming answered {response.code}")
        return EventStreamResponse(response, call.function, call.request_id)

    def _result(self, call: InvokeCall, response: IResponse, body: bytes) -> InvokeResult:
        headers = response.headers
        aws_request_id = _header(headers, b"x-amzn-requestid")
        if response.code in (200, 202, 204):
            return InvokeResult(
                payload=body,
                status=response.code,
                function_error=_header(headers, b"x-amz-function-error"),
                aws_request_id=aws_request_id,
                executed_version=_header(headers, b"x-amz-executed-version"),
                log_result=_header(headers, b"x-amz-log-result"),
            )
        try:
            document: object = json.loads(body) if body else None
        except ValueError:
            document = None
        code = error_code(headers, document, response.code)
        message = error_message(document)
        self.log.warn(
            "Lambda refused to invoke {function}: {status} {code}: {message}"
            " (aws_request_id={aws_request_id})",
            function=call.function,
            status=response.code,
            code=code,
            message=message,
            aws_request_id=aws_request_id,
            request_id=call.request_id,
        )
        detail = f"{response.code} {code}: {message}"
        if response.code == 429:
            raise Throttled(
                detail=detail,
                code=code,
                aws_request_id=aws_request_id,
                retry_after=_header(headers, b"retry-after"),
            )
        if response.code == 413:
            raise PayloadTooLarge(detail=detail, code=code, aws_request_id=aws_request_id)
        raise InvokeFailed(detail=detail, code=code, aws_request_id=aws_request_id)


def _describe(error: BaseException) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons)
    return f"{type(error).__name__}: {error}"


def resolve_endpoint(region: str, endpoint_url: str | None = None) -> str:
    """
    The Lambda endpoint for a region, from botocore's endpoint rules.

    Loading the rules takes tens of milliseconds, so this runs once per
    region at startup, never per request.
    """
    if endpoint_url:
        return endpoint_url.rstrip("/")
    import botocore.session

    session = botocore.session.Session()
    # Endpoint rules need no credentials; placeholders keep botocore from
    # searching the credential chain, which may block on the network.
    placeholder = "endpoint-lookup-only"
    client = session.create_client(
        "lambda",
        region_name=region,
        aws_access_key_id=placeholder,
        aws_secret_access_key=placeholder,
    )
    return str(client.meta.endpoint_url)
