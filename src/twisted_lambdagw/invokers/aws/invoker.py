"""
Lambda's Invoke API over treq, signed exactly as botocore signs.

botocore does the endpoint resolution and is the reference for signing
(SigV4), because those are the parts AWS changes and botocore tracks;
L{twisted_lambdagw.invokers.aws.sigv4} signs with botocore's result, byte for byte, at a
fraction of the cost.  treq does the sending, on the reactor, through one
persistent connection pool shared by every route.
Nothing here blocks: credentials come from L{CredentialSource}, which keeps
botocore's blocking refreshes in threads.

What the invoker promises, beyond signing:

  - A call that may have reached the function is never sent twice, unless
    the route says C{retry_idempotent} and the client's method is GET,
    HEAD or OPTIONS.  A connection that failed before the request went out
    (refused, DNS, connect timeout) is retried once, re-signed, for any
    method; so is a call refused for an expired session token, after a
    forced credential refresh.  Idempotent calls also retry 429 and 5xx
    answers and dropped connections, with jittered backoff and Lambda's
    C{Retry-After}, only while the route's timeout leaves room.
  - Lambda's own payload is always JSON, so a 200 whose body is empty or not
    JSON is an upstream fault (502), never passed on as a reply.
  - Refusals are logged with their error type, message and
    C{x-amzn-RequestId}; function errors with the decoded log tail when the
    route asks for one (C{log_type = Tail}).  Neither reaches the client.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import random
import time
from collections.abc import Callable
from urllib.parse import quote

from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from twisted_lambdagw._compat import RequestNotSent, TimedSigV4Auth
from twisted_lambdagw._types import HTTPClient
from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.core.messages import NOT_PARSED
from twisted_lambdagw.invokers.aws import sigv4
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult
from twisted_lambdagw.net.headers import checked_headers

from .admission import ConnectionLimit
from .credentials import CredentialSource, RunInThread
from .errors import Refusal, error_code, error_message, header
from .stream import EventStreamResponse
from .upstream import NO_COOKIES, PreparedURL, ReplyTooLarge, read_body

__all__ = [
    "AWSInvoker",
    "CredentialSource",
    "RunInThread",
    "error_code",
    "error_message",
    "invoke_url",
    "is_cancellation",
    "sign",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
INVOKE_PATH = "/2015-03-31/functions/{}/invocations"
STREAM_PATH = "/2021-11-15/functions/{}/response-streaming-invocations"
_SAFE = "-_.~"


def invoke_url(endpoint: str, function: str, qualifier: str | None, path: str = INVOKE_PATH) -> str:
    """
    The Invoke URL, encoded exactly as botocore encodes it.

    The function name is a URI label: C{:} in an ARN becomes C{%3A}.  The
    qualifier goes in the query, C{$LATEST} as C{%24LATEST}.  C{path} is
    L{STREAM_PATH} for InvokeWithResponseStream, which takes the same.
    """
    url = endpoint.rstrip("/") + path.format(quote(function, safe=_SAFE))
    if qualifier:
        url += "?Qualifier=" + quote(qualifier, safe=_SAFE)
    return url


@functools.lru_cache(maxsize=4096)
def _target(
    endpoint: str, function: str, qualifier: str | None, path: str
) -> tuple[str, PreparedURL]:
    """
    The Invoke URL as text (what is signed) and as treq sends it, unchanged.

    Cached: a gateway calls few functions many times.  Names come from
    clients, so the cache is bounded.
    """
    url = invoke_url(endpoint, function, qualifier, path)
    return url, PreparedURL.of(url)


def sign(
    credentials: ReadOnlyCredentials,
    region: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    when: float,
) -> dict[str, str]:
    """
    The headers of a signed C{POST url}: C{headers} plus the SigV4 ones.

    The URL, method and body sent must be exactly the ones signed.
    """
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    TimedSigV4Auth(credentials, region, when).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def is_cancellation(error: BaseException) -> bool:
    """
    Whether a failure from treq was caused by cancelling the request.

    The HTTP client reports a cancelled request wrapped in its own errors;
    the caller needs a plain CancelledError so timeouts and client
    disconnects are told apart from a broken upstream.
    """
    if isinstance(error, CancelledError | ConnectingCancelledError):
        return True
    reasons = getattr(error, "reasons", None)
    if reasons:
        return any(r.check(CancelledError) is not None for r in reasons)
    return False


def not_sent(error: BaseException) -> bool:
    """
    Whether a failure from treq happened before any byte of the request left.

    Refused connections, failed DNS lookups and connect timeouts (all
    ConnectError but the DNS one) and a pooled connection found closed
    before writing; a reset after sending is none of these.
    """
    return isinstance(error, ConnectError | DNSLookupError | RequestNotSent)


def _describe(error: BaseException) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons)
    return f"{type(error).__name__}: {error}"


def decode_log_tail(log_result: str | None) -> str | None:
    """
    The function's log tail from C{X-Amz-Log-Result} (base64), as text.
    """
    if not log_result:
        return None
    try:
        raw = base64.b64decode(log_result, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "replace")


class _Transport(Exception):
    """
    The HTTP exchange itself failed; C{sent} says whether the request may have gone out.
    """

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class AWSInvoker:
    """
    Invokes functions in one region through Lambda's Invoke API.

    @param client: what sends the calls, with treq's C{post}: a treq
        HTTPClient (L{twisted_lambdagw.invokers.aws.upstream.lambda_client}) or
        C{StubTreq}, over a persistent pool shared by every route; the
        service that owns the pool closes it on shutdown.
    @param now: the time signatures carry; by default C{clock}'s.
    @param clock: for retry backoff; without it nothing is retried after a
        wait (the one immediate retry of an unsent request still happens).
    @param log_type: C{Tail} asks Lambda for the last 4 KB of the log of
        synchronous calls, to log with function errors.
    @param retry_idempotent: retry GET, HEAD and OPTIONS calls that failed
        in a way worth retrying, up to C{max_attempts} in all.
    @param jitter: uniform in [0, 1), to spread retries out.
    @param limit: bounds the calls under way to C{endpoint} (shared by every
        invoker of that endpoint, sized by C{[aws] max_connections}); a
        call beyond it waits its turn, within the route's timeout.  A
        streamed call holds its slot until its stream ends.
    """

    log = Logger()

    max_attempts = 3
    backoff_base = 0.05
    """Seconds before the second attempt (half of it, plus up to as much again)."""
    backoff_cap = 1.0

    def __init__(
        self,
        client: HTTPClient,
        credentials: CredentialSource,
        region: str,
        endpoint: str,
        now: Callable[[], float] | None = None,
        *,
        clock: IReactorTime | None = None,
        log_type: str = "None",
        retry_idempotent: bool = False,
        jitter: Callable[[], float] = random.random,
        limit: ConnectionLimit | None = None,
    ) -> None:
        self._client = client
        self._limit = limit
        self._credentials = credentials
        self._region = region
        self._endpoint = endpoint
        if now is None:
            now = clock.seconds if clock is not None else time.time
        self._now = now
        self._clock = clock
        self._log_type = log_type
        self._retry_idempotent = retry_idempotent
        self._jitter = jitter

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        started = self._now()
        url = _target(self._endpoint, call.function, call.qualifier, INVOKE_PATH)
        headers: dict[str, str] = {"X-Amz-Invocation-Type": call.invocation_type}
        if self._log_type == "Tail" and call.invocation_type == "RequestResponse":
            headers["X-Amz-Log-Type"] = "Tail"
        idempotent = self._retry_idempotent and call.method.upper() in IDEMPOTENT_METHODS
        attempt = 0
        resent_unsent = refreshed = False
        while True:
            attempt += 1
            credentials = await self._credentials.frozen()
            try:
                status, response, body = await self._admitted(call, url, headers, credentials)
            except _Transport as failure:
                if not failure.sent and not resent_unsent:
                    resent_unsent = True
                    self._log_retry(call, attempt, failure.reason, 0.0)
                    continue
                if idempotent and await self._backoff(call, started, attempt, failure.reason):
                    continue
                raise InvokeFailed(
                    detail=f"calling {call.function}: {failure.reason} (attempt {attempt})"
                ) from None
            if 200 <= status < 300:
                return self._result(call, response, body)
            refusal = Refusal.parse(status, response.headers, body)
            self._log_refusal(call, refusal)
            if refusal.expired_token and not refreshed:
                refreshed = True
                if await self._credentials.refreshed(credentials) is not None:
                    self._log_retry(call, attempt, "credentials refreshed", 0.0)
                    continue
            if (
                idempotent
                and refusal.retryable
                and await self._backoff(call, started, attempt, refusal.code, refusal.retry_after)
            ):
                continue
            raise refusal.error()

    async def invoke_stream(self, call: InvokeCall) -> EventStreamResponse:
        """
        Call InvokeWithResponseStream; return once Lambda has started streaming.

        Refusals (any status but 200) are classified and logged exactly as for
        Invoke.  The body is not read here: the caller starts the returned
        stream.  Nothing is retried: once sent, a streamed call may have run.
        """
        limit = self._limit
        if limit is not None:
            # Signed once admitted: a long wait must not age the signature.
            await _acquire(limit)
        try:
            credentials = await self._credentials.frozen()
            target = _target(self._endpoint, call.function, call.qualifier, STREAM_PATH)
            headers = {"X-Amz-Invocation-Type": "RequestResponse"}
            try:
                response = await self._response(call, target, headers, credentials)
                body = b"" if response.code == 200 else await self._body(call, response)
            except _Transport as failure:
                raise InvokeFailed(detail=f"calling {call.function}: {failure.reason}") from None
            if response.code != 200:
                refusal = Refusal.parse(response.code, response.headers, body)
                self._log_refusal(call, refusal)
                raise refusal.error()
            # The connection stays busy until the stream ends: so does the slot.
            stream = EventStreamResponse(
                response,
                call.function,
                call.request_id,
                on_end=limit.release if limit is not None else None,
            )
            return stream
        except BaseException as e:
            if limit is not None:
                _give_back(limit, e)
            raise

    async def _admitted(
        self,
        call: InvokeCall,
        target: tuple[str, PreparedURL],
        headers: dict[str, str],
        credentials: ReadOnlyCredentials,
    ) -> tuple[int, IResponse, bytes]:
        """
        L{_send} once the endpoint's limit has a slot for it, which it holds
        until the whole body is read (the connection is back in the pool by
        then, for the next call waiting).
        """
        limit = self._limit
        if limit is None:
            return await self._send(call, target, headers, credentials)
        await _acquire(limit)
        try:
            sent = await self._send(call, target, headers, credentials)
        except BaseException as e:
            _give_back(limit, e)
            raise
        limit.release()
        return sent

    async def _send(
        self,
        call: InvokeCall,
        target: tuple[str, PreparedURL],
        headers: dict[str, str],
        credentials: ReadOnlyCredentials,
    ) -> tuple[int, IResponse, bytes]:
        """
        One signed POST and its whole body; transport failures as L{_Transport}.
        """
        response = await self._response(call, target, headers, credentials)
        return response.code, response, await self._body(call, response)

    async def _response(
        self,
        call: InvokeCall,
        target: tuple[str, PreparedURL],
        headers: dict[str, str],
        credentials: ReadOnlyCredentials,
    ) -> IResponse:
        """
        One signed POST, until the response head; transport failures as
        L{_Transport}, which says whether the request may have gone out.
        """
        url, sent_url = target
        signed = self._signed_headers(credentials, url, call, headers)
        try:
            posted = self._post(sent_url, call.payload, signed)
            del signed  # copied into the request: not kept while it runs
            return await posted
        except Exception as e:
            if is_cancellation(e):
                raise CancelledError() from None
            raise _Transport(_describe(e), sent=not not_sent(e)) from None

    async def _body(self, call: InvokeCall, response: IResponse) -> bytes:
        """
        The whole body of C{response}, bounded; a failure to read it as
        L{_Transport} (the request went out).
        """
        try:
            return await read_body(response)
        except ReplyTooLarge as e:
            raise InvokeFailed(detail=f"calling {call.function}: {e}") from None
        except Exception as e:
            if is_cancellation(e):
                raise CancelledError() from None
            raise _Transport(_describe(e), sent=True) from None

    def _post(self, sent_url: PreparedURL, payload: bytes, signed: Headers) -> Deferred[IResponse]:
        """
        Send one signed call through treq: never redirected (a signed call
        goes where it was signed for), no cookies, and unbuffered (the caller
        reads the body once, bounded, or streams it).  treq gets the clock
        this invoker was given: without one it imports the global reactor,
        on every call.
        """
        posted: Deferred[IResponse] = self._client.post(
            sent_url,
            data=payload,
            headers=signed,
            cookies=NO_COOKIES,
            allow_redirects=False,
            unbuffered=True,
            reactor=self._clock,
        )
        return posted

    def _signed_headers(
        self,
        credentials: ReadOnlyCredentials,
        url: str,
        call: InvokeCall,
        headers: dict[str, str],
    ) -> Headers:
        """
        The headers of the signed call, as treq takes them.

        Only these are kept by the caller, and only until treq has copied
        them into the request: with 10,000 calls under way, the text copies
        kept for the whole call were about 0.6 KB each.  Built in one step
        (L{checked_headers}) when no value holds a line break or NUL; a
        value that does (a key or token from a broken config) goes through
        twisted.web's constructor, which replaces the breaks with spaces.
        """
        signed = self._sign(credentials, url, call.payload, headers)
        if call.trace_id:
            # Never signed (botocore leaves it out too): X-Ray may rewrite it.
            signed["X-Amzn-Trace-Id"] = call.trace_id
        values = "".join(signed.values())
        if "\r" in values or "\n" in values or "\x00" in values:
            return Headers({k: [v] for k, v in signed.items()})
        return checked_headers({k.encode("ascii"): [v.encode()] for k, v in signed.items()})

    def _sign(
        self, credentials: ReadOnlyCredentials, url: str, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        """
        The signed headers: by L{sigv4}, which gives botocore's result faster,
        or by botocore for a request outside the shape it handles.
        """
        when = self._now()
        signed = sigv4.sign(credentials, self._region, url, body, headers, when)
        if signed is None:
            signed = sign(credentials, self._region, url, body, headers, when)
        return signed

    async def _backoff(
        self,
        call: InvokeCall,
        started: float,
        attempt: int,
        reason: str,
        retry_after: str | None = None,
    ) -> bool:
        """
        Wait before another attempt, if one is allowed and fits in the timeout.
        """
        if self._clock is None or attempt >= self.max_attempts:
            return False
        base = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        delay = base / 2 + self._jitter() * base / 2
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        if self._now() - started + delay >= call.timeout:
            return False
        self._log_retry(call, attempt, reason, delay)
        await deferLater(self._clock, delay)
        return True

    def _log_retry(self, call: InvokeCall, attempt: int, reason: str, delay: float) -> None:
        self.log.info(
            "retrying {function} after attempt {attempt} ({reason}) in {delay:.3f}s",
            function=call.function,
            attempt=attempt,
            reason=reason,
            delay=delay,
            request_id=call.request_id,
        )

    def _log_refusal(self, call: InvokeCall, refusal: Refusal) -> None:
        if refusal.clock_skew:
            level = LogLevel.error
            text = (
                "Lambda refused to invoke {function}: the request's signing time is off"
                " ({code}: {error_message}); check this host's clock (NTP)"
            )
        else:
            level = LogLevel.warn
            text = "Lambda refused to invoke {function}: {status} {code}: {error_message}"
        self.log.emit(
            level,
            text + " (aws_request_id={aws_request_id})",
            function=call.function,
            status=refusal.status,
            code=refusal.code,
            error_message=refusal.message,
            aws_request_id=refusal.aws_request_id,
            request_id=call.request_id,
        )

    def _result(self, call: InvokeCall, response: IResponse, body: bytes) -> InvokeResult:
        headers = response.headers
        status = response.code
        function_error = header(headers, b"x-amz-function-error")
        aws_request_id = header(headers, b"x-amzn-requestid")
        log_result = header(headers, b"x-amz-log-result")
        document: object = NOT_PARSED
        if function_error is not None:
            tail = decode_log_tail(log_result)
            if tail is not None:
                self.log.warn(
                    "function {function} failed ({kind}); its log ends with:\n{log_tail}",
                    function=call.function,
                    kind=function_error,
                    log_tail=tail,
                    aws_request_id=aws_request_id,
                    request_id=call.request_id,
                )
        elif call.invocation_type == "RequestResponse" and status == 200:
            # Parsed here once: the format reads the document, not the bytes again.
            problem, document = _json_document(body)
            if problem is not None:
                self.log.warn(
                    "Lambda answered {function} with {problem} (aws_request_id={aws_request_id})",
                    function=call.function,
                    problem=problem,
                    aws_request_id=aws_request_id,
                    request_id=call.request_id,
                )
                raise InvokeFailed(
                    detail=f"{call.function}: 200 with {problem}",
                    aws_request_id=aws_request_id,
                )
        return InvokeResult(
            payload=body,
            status=status,
            function_error=function_error,
            aws_request_id=aws_request_id,
            executed_version=header(headers, b"x-amz-executed-version"),
            log_result=log_result,
            document=document,
        )


async def _acquire(limit: ConnectionLimit) -> None:
    """
    A slot of C{limit}: at once when one is free, else in turn.
    """
    if not limit.try_acquire():
        await limit.acquire()


def _give_back(limit: ConnectionLimit, error: BaseException) -> None:
    """
    The slot of a call that failed: a cancelled call's (client gone, time
    out) passes on a turn later, when others leaving in the same poll have
    left the queue; see L{twisted_lambdagw.invokers.aws.admission}.
    """
    if isinstance(error, CancelledError):
        limit.release_later()
    else:
        limit.release()


def _json_document(body: bytes) -> tuple[str | None, object]:
    """
    A synchronous result's JSON document, or why it is not one.
    """
    if not body.strip():
        return "an empty body", None
    try:
        return None, json.loads(body)
    except ValueError:
        return f"a body that is not JSON ({len(body)} bytes)", None
