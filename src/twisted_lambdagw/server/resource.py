"""
The twisted.web resource that turns HTTP requests into Lambda invocations.

For each request: pick the route by the longest prefix (before the body is
even looked at), resolve the function, build the event, invoke with the
route's timeout, validate the whole reply, then write it once.  Between the route
match and the invoke, the route's policy chain runs
(L{twisted_lambdagw.policies}: authorization, the name and body checks,
the in-flight admission...).  Every failure on the way is a L{GatewayError}
answered with its status and a JSON body; every answer to a routed request
carries the headers the chain asked for.
If the client goes away, the invocation is cancelled and nothing is written.
Routes with ``stream = yes`` hand the response to L{streaming} instead,
which writes it as it arrives.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, unquote_to_bytes

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_lambdagw.core.errors import (
    BadRequest,
    FunctionFailed,
    GatewayError,
    InvokeFailed,
    InvokeTimeout,
    NotFound,
    URITooLong,
)
from twisted_lambdagw.core.exchange import Exchange, ExchangeObserver
from twisted_lambdagw.core.formats import EventFormat
from twisted_lambdagw.core.formats._common import HOP_BY_HOP, NO_CONTENT_STATUSES
from twisted_lambdagw.core.messages import IncomingRequest, Reply
from twisted_lambdagw.core.proxies import Origin, TrustedProxies
from twisted_lambdagw.core.routing import Target, normal_path
from twisted_lambdagw.invokers.base import (
    InvocationType,
    InvokeCall,
    Invoker,
    InvokeResult,
    StreamingInvoker,
)
from twisted_lambdagw.net.deadlines import Deadlines
from twisted_lambdagw.net.headers import raw_values
from twisted_lambdagw.observe.logs import stack_text
from twisted_lambdagw.policies.authorizers._common import authorizer_document
from twisted_lambdagw.policies.build import open_chain
from twisted_lambdagw.policies.chain import Chain, Passage
from twisted_lambdagw.policies.inflight import InFlight

from .request import GatewayRequest
from .state import RoutingState
from .streaming import StreamSettings, serve_stream

if TYPE_CHECKING:
    from twisted_lambdagw.core.config import RouteConfig, TrustedProxy

REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PRINTABLE_ASCII = re.compile(rb"[\x20-\x7e]+")
GATEWAY_SET = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-request-id",
        "x-authenticated-user",
    }
)
"""Request headers only the gateway sets: a client's values never reach a function."""
JSON_TYPE = ("Content-Type", "application/json")
MAX_URI_LENGTH = 8 * 1024
"""Longer request URIs (path and query) get 414, as nginx's default buffers would."""


class MetricsPage(Protocol):
    """
    What the resource serves at its metrics path.
    """

    content_type: str

    def render(self) -> bytes:
        """
        The current metrics, in the format C{content_type} names.
        """
        ...


@dataclass(frozen=True, slots=True)
class Binding:
    """
    A route with what serves it: its invoker, its event format and its
    policy chain (L{twisted_lambdagw.policies.build_chain}); without one,
    the resource gives it an open route's chain (the name and body checks
    and the in-flight admission).
    """

    route: RouteConfig
    invoker: Invoker
    format: EventFormat
    chain: Chain | None = None


class RandomIds:
    """
    Random request ids in the text form of a version 4 UUID.

    Each is 122 bits from the operating system's random source, as with
    ``uuid.uuid4()``, but read 4 KB at a time and formatted directly: a
    third of the cost.  The buffer is dropped in a forked child, so parent
    and child never hand out the same ids.
    """

    _BATCH = 4096

    def __init__(self) -> None:
        self._random = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._random = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at + 16 > len(self._random):
            self._random = os.urandom(self._BATCH)
            at = 0
        self._at = at + 16
        h = self._random[at : at + 16].hex()
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


new_request_id = RandomIds()
"""A new random request id; unique per process and across processes."""


class _Serving:
    """
    One request being served: the Deferred of its coroutine, whether the
    client went away, and its passage through its route's chain once the
    route is known.
    """

    __slots__ = ("deferred", "gone", "passage")

    def __init__(self) -> None:
        self.deferred: Deferred[None] | None = None
        self.gone = False
        self.passage: Passage | None = None

    def cancel(self) -> None:
        """
        Cancel what the request's coroutine is waiting for.
        """
        if self.deferred is not None:
            self.deferred.cancel()

    def client_gone(self, failure: Failure) -> None:
        self.gone = True
        self.cancel()


class GatewayResource(Resource):
    """
    Serves every configured route from one leaf resource.

    It sees the whole request path, so it can be mounted anywhere in a Site:
    route prefixes are matched against the full path.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        bindings: Sequence[Binding],
        clock: IReactorTime,
        *,
        health_path: str | None = "/healthz",
        metrics_path: str | None = None,
        metrics: MetricsPage | None = None,
        max_in_flight: int | None = None,
        in_flight: InFlight | None = None,
        observers: Sequence[ExchangeObserver] = (),
        new_id: Callable[[], str] = new_request_id,
        now: Callable[[], float] = time.time,
        trusted_proxies: Sequence[TrustedProxy] = (),
    ) -> None:
        super().__init__()
        self._in_flight = in_flight if in_flight is not None else InFlight(max_in_flight)
        self.state: RoutingState[Binding] = RoutingState.of(self.chained(bindings))
        """
        The routes and what serves them, each with its policy chain; each
        request reads it once, when it arrives, and a reload replaces it
        whole (L{twisted_lambdagw.server.state}).
        """
        self._clock = clock
        self._deadlines = Deadlines(clock)
        self._health_path = health_path
        self._metrics_path = metrics_path if metrics is not None else None
        self._metrics = metrics
        self.observers = list(observers)
        self._new_id = new_id
        self._now = now
        self._proxies = TrustedProxies(trusted_proxies)
        self._proxied = bool(self._proxies)
        self.active = 0
        """Requests being served now, from arrival to the last byte written."""
        self._idle: list[Deferred[None]] = []
        self.draining = False
        """
        Set on shutdown: health checks fail so load balancers move away, and
        every response closes its connection.
        """

    def chained(self, bindings: Sequence[Binding]) -> list[Binding]:
        """
        C{bindings}, each with a chain: a binding given none gets an open
        route's chain (name and body checks, in-flight admission).
        """
        return [
            b if b.chain is not None else replace(b, chain=open_chain(self._in_flight))
            for b in bindings
        ]

    def configure(
        self,
        *,
        health_path: str | None,
        max_in_flight: int | None,
        trusted_proxies: Sequence[TrustedProxy],
    ) -> None:
        """
        Take the settings a reload may change besides the routes; each is
        read once per request, when it arrives.
        """
        self._health_path = health_path
        self._in_flight.limit = max_in_flight
        self._proxies = TrustedProxies(trusted_proxies)
        self._proxied = bool(self._proxies)

    @property
    def in_flight(self) -> int:
        """
        Invocations under way now (admitted by the routes' chains).
        """
        return self._in_flight.count

    def when_idle(self) -> Deferred[None]:
        """
        Fires once no request is being served (at once if none is).
        """
        if self.active == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._idle.remove)
        self._idle.append(waiter)
        return waiter

    def render(self, request: Request) -> int:
        serving = _Serving()
        serving.deferred = Deferred.fromCoroutine(self._respond(request, serving))
        if isinstance(request, GatewayRequest):
            request.on_connection_lost(serving.client_gone)
        else:
            request.notifyFinish().addErrback(serving.client_gone)
        serving.deferred.addErrback(self._unhandled, request)
        return NOT_DONE_YET

    def _unhandled(self, failure: Failure, request: Request) -> None:
        self.log.failure(
            "unhandled error serving {method} {path}",
            failure,
            method=_text(request.method),
            path=_text(request.path),
        )

    async def _respond(self, request: Request, serving: _Serving) -> None:
        """
        Serve one request and hand its L{Exchange} to the observers.

        One coroutine from arrival to the observers: every layer of
        coroutine under L{render} is resumed again each time an awaited
        result comes in.
        """
        self.active += 1
        state = self.state
        # StateUse.enter and leave, inlined: this runs for every request.
        use = state.use
        use.active += 1
        try:
            request_id = self._request_id(request)
            origin = self.origin(request)
            exchange = Exchange(
                request_id=request_id,
                started=self._clock.seconds(),
                remote=origin.remote,
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("latin-1"),
            )
            streamed = False
            try:
                reply = await self._serve(request, exchange, origin, serving, state)
                streamed = reply is None
            except CancelledError:
                if not serving.gone:
                    raise
                reply = None
                exchange.outcome = "client_gone"
            except GatewayError as error:
                self._log_error(request, request_id, error)
                exchange.outcome = "error"
                exchange.error = error.message
                if isinstance(error, InvokeFailed):
                    exchange.aws_request_id = exchange.aws_request_id or error.aws_request_id
                reply = error_reply(error, request_id)
            except Exception:
                self.log.failure(
                    "error serving {method} {path}",
                    method=exchange.method,
                    path=exchange.path,
                    request_id=request_id,
                )
                exchange.outcome = "error"
                reply = error_reply(GatewayError(), request_id)
            if streamed:
                pass  # the stream relay wrote the response, or cut it
            elif reply is not None and not serving.gone:
                passage = serving.passage
                if passage is not None:
                    reply = passage.answer(reply)
                exchange.first_byte = self._clock.seconds()
                if self.draining:
                    close_after(request)
                write_reply(request, reply, request_id)
                exchange.status = reply.status
                exchange.bytes_out = body_length(request, reply)
            elif exchange.outcome != "client_gone":
                exchange.outcome = "client_gone"
            exchange.finished = self._clock.seconds()
            for observe in self.observers:
                observe(exchange)
        finally:
            if serving.passage is not None:
                serving.passage.finish()
            use.active -= 1
            if use.retired and use.active == 0:
                use.unused()
            self.active -= 1
            if self.active == 0 and self._idle:
                idle, self._idle = self._idle, []
                for waiter in idle:
                    waiter.callback(None)

    def _request_id(self, request: Request) -> str:
        given = raw_values(request.requestHeaders, b"x-request-id")
        if given:
            # Any bytes may come; only an id of the safe characters is kept.
            text = given[-1].decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
        return self._new_id()

    def origin(self, request: Request) -> Origin:
        """
        The client's address, scheme and port, through trusted proxies if any.
        """
        client = request.getClientAddress()
        host = getattr(client, "host", None)
        scheme = "https" if request.isSecure() else "http"
        port = getattr(request.getHost(), "port", 0) or 0
        if not self._proxied:
            return Origin(host or "", scheme, port)
        headers = request.requestHeaders

        def values(name: bytes) -> list[str]:
            return [_text(v) for v in headers.getRawHeaders(name, [])]

        return self._proxies.origin(
            host,
            scheme,
            port,
            values(b"x-forwarded-for"),
            values(b"x-forwarded-proto"),
            values(b"x-forwarded-port"),
        )

    async def _serve(
        self,
        request: Request,
        exchange: Exchange,
        origin: Origin,
        serving: _Serving,
        state: RoutingState[Binding],
    ) -> Reply | None:
        """
        The reply to write, or None when it was streamed (already written).
        """
        request_id = exchange.request_id
        if len(request.uri) > MAX_URI_LENGTH:
            raise URITooLong(detail=f"{len(request.uri)} bytes")
        raw_path, path = checked_path(request)
        if self._health_path is not None and path == self._health_path:
            return health_reply(self.draining)
        if self._metrics is not None and path == self._metrics_path:
            return Reply(
                200, (("Content-Type", self._metrics.content_type),), self._metrics.render()
            )
        route = state.table.match(path)
        if route is None:
            raise NotFound("no route for this path", detail=f"no route for {raw_path!r}")
        exchange.route = route.prefix
        binding = state.bindings[route.prefix]
        chain = binding.chain
        if chain is None:
            raise GatewayError(detail=f"{route.prefix} has no policy chain")
        passage = serving.passage = Passage(
            request, request_id, route, origin, raw_path, path, exchange
        )
        answer = await chain.run(passage) if chain.waits else chain.run_now(passage)
        if answer is not None:
            return answer
        target = passage.target
        if target is None:
            raise GatewayError(detail=f"the chain of {route.prefix} resolved no function")
        incoming = self._incoming(passage, target, state.dropped)
        call = InvokeCall(
            function=target.function,
            payload=binding.format.build(incoming),
            qualifier=target.qualifier,
            invocation_type=_invocation_type(route.invocation_type),
            request_id=request_id,
            timeout=route.timeout,
            trace_id=_trace_id(request.requestHeaders),
            method=incoming.method,
        )
        # The event is built: its parts (the headers as text, mostly) are not
        # needed while the call runs, which at high concurrency is most of a
        # request's life (about 1.5 KB per request of 10,000 under way).
        del incoming
        if route.stream and isinstance(binding.invoker, StreamingInvoker):
            await self._stream(passage, binding.invoker, call)
            return None
        result = await self._invoke(binding.invoker, call, exchange, serving)
        if call.invocation_type == "Event":
            return accepted_reply(request_id, result)
        if result.function_error is not None:
            self._log_function_error(request_id, call, result)
            raise FunctionFailed(detail=f"{call.function}: {result.function_error}")
        return binding.format.parse(result.payload, result.document)

    async def _invoke(
        self, invoker: Invoker, call: InvokeCall, exchange: Exchange, serving: _Serving
    ) -> InvokeResult:
        # Past the timeout, the whole request's Deferred is cancelled: that
        # cancels what the invoker awaits, and the CancelledError comes up
        # through it to here.  (No Deferred of its own for the invocation:
        # one more Deferred, and one more driver of coroutines, per request.)
        with _Invocation(self._clock, exchange):
            deadline = self._deadlines.add(call.timeout, serving.cancel)
            try:
                result = await invoker.invoke(call)
            except CancelledError:
                if not deadline.expired:
                    raise
                raise InvokeTimeout(detail=f"{call.function} took over {call.timeout}s") from None
            finally:
                deadline.cancel()
        exchange.aws_request_id = result.aws_request_id
        exchange.executed_version = result.executed_version
        exchange.function_error = result.function_error
        return result

    async def _stream(self, passage: Passage, invoker: StreamingInvoker, call: InvokeCall) -> None:
        """
        Relay a streamed invocation, its head with the chain's answer headers.
        """
        request = passage.request
        exchange = passage.exchange
        with _Invocation(self._clock, exchange):
            settings = StreamSettings.for_route(passage.route)
            if self.draining:
                close_after(request)
            await serve_stream(
                request,
                invoker,
                call,
                exchange,
                self._clock,
                settings,
                head_headers=passage.headers_for,
            )

    def _incoming(
        self, passage: Passage, target: Target, dropped_cache: dict[str, frozenset[str]]
    ) -> IncomingRequest:
        request = passage.request
        request_id = passage.request_id
        route = passage.route
        origin = passage.origin
        path = passage.path
        principal = passage.principal
        user = (principal.user or None) if principal is not None else None
        body = request.content.read() if request.content is not None else b""
        remote = origin.remote
        address = request.getHost()
        server_port = getattr(address, "port", 0)
        scheme = origin.scheme
        host = _last_text(request.requestHeaders, b"host") or f"{getattr(address, 'host', '')}"
        uri = request.uri.decode("latin-1")
        method = request.method.decode("ascii")
        gateway_headers = [
            ("X-Forwarded-For", remote),
            ("X-Forwarded-Proto", scheme),
            ("X-Forwarded-Port", str(origin.port)),
            ("X-Request-ID", request_id),
        ]
        if user is not None:
            gateway_headers.append(("X-Authenticated-User", user))
        if route.header_upstream:
            values = {
                "remote": remote,
                "host": host,
                "scheme": scheme,
                "method": method,
                "path": path,
                "uri": uri,
                "request_id": request_id,
            }
            gateway_headers += [(t.name, t.expand(values)) for t in route.header_upstream]
        dropped = dropped_cache.get(route.prefix)
        if dropped is None:
            dropped = dropped_cache[route.prefix] = dropped_headers(gateway_headers)
        headers = forwarded_headers(request, body, gateway_headers, dropped)
        _, _, query = uri.partition("?")
        return IncomingRequest(
            request_id=request_id,
            method=method,
            raw_path=passage.raw_path,
            path=path,
            function_raw_path=target.function_raw_path,
            function_path=unquote(target.function_raw_path),
            raw_query=query,
            headers=headers,
            body=body,
            protocol=request.clientproto.decode("ascii", "replace"),
            scheme=scheme,
            host=host,
            remote_addr=remote,
            server_port=server_port,
            time=self._now(),
            route_prefix=route.prefix,
            function_name=target.function,
            user=user,
            authorizer=authorizer_document(principal),
        )

    def _log_error(self, request: Request, request_id: str, error: GatewayError) -> None:
        # The path, not the URI: a query string may carry a token.
        self.log.info(
            "{method} {path}: {status} {error} {detail}",
            method=_text(request.method),
            path=_text(request.path),
            status=error.status,
            error=error.message,
            detail=error.detail,
            request_id=request_id,
        )

    def _log_function_error(self, request_id: str, call: InvokeCall, result: InvokeResult) -> None:
        try:
            document = json.loads(result.payload)
        except ValueError:
            document = result.payload.decode("utf-8", "replace")
        if not isinstance(document, dict):
            document = {"errorMessage": document}
        self.log.warn(
            "function {function} failed ({kind}): {error_type}: {error_message}",
            function=call.function,
            kind=result.function_error,
            error_type=document.get("errorType", ""),
            error_message=document.get("errorMessage", ""),
            stack_trace=stack_text(document.get("stackTrace") or document.get("trace")),
            aws_request_id=result.aws_request_id,
            request_id=request_id,
        )


class _Invocation:
    """
    One invocation, unary or streamed, for as long as it runs: its start
    and end times and the code of a failure recorded on the exchange for
    the access log and the metrics.  (Admission, ``max_in_flight``, is the
    chain's L{twisted_lambdagw.policies.inflight.Admission}.)
    """

    __slots__ = ("_clock", "_exchange")

    def __init__(self, clock: IReactorTime, exchange: Exchange) -> None:
        self._clock = clock
        self._exchange = exchange

    def __enter__(self) -> None:
        self._exchange.invoke_started = self._clock.seconds()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        exchange = self._exchange
        exchange.invoke_finished = self._clock.seconds()
        if isinstance(error, InvokeTimeout):
            exchange.error_code = "InvokeTimeout"
        elif isinstance(error, InvokeFailed):
            exchange.error_code = error.code or "InvokeFailed"


def checked_path(request: Request) -> tuple[str, str]:
    """
    The request path in normal form and decoded (L{normal_path}), or L{BadRequest}.

    The URI must be ASCII and its query valid UTF-8 once decoded; the path
    is put in normal form, so that routes, the health and metrics paths and
    the function's name are all read from one spelling of it.
    """
    try:
        uri = request.uri.decode("ascii")
        raw_path = request.path.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request URI is not ASCII") from None
    normal = normal_path(raw_path)
    _, _, query = uri.partition("?")
    if "%" in query:
        try:
            unquote_to_bytes(query.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("request query is not valid UTF-8") from None
    return normal


def _invocation_type(value: str) -> InvocationType:
    return "Event" if value == "Event" else "RequestResponse"


def _trace_id(headers: Headers) -> str | None:
    """
    The client's X-Amzn-Trace-Id, for Lambda (X-Ray), if it is printable ASCII.

    X-Ray's header never holds anything else; other bytes are not passed on
    to Lambda (the function still sees the header in its event).
    """
    values = raw_values(headers, b"x-amzn-trace-id")
    if values and _PRINTABLE_ASCII.fullmatch(values[-1]):
        return values[-1].decode("ascii")
    return None


def _last_text(headers: Headers, name: bytes) -> str | None:
    """
    The last value of the request header C{name} (lower-case), as L{_text}, or None.
    """
    values = raw_values(headers, name)
    return _text(values[-1]) if values else None


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def dropped_headers(gateway_headers: Sequence[tuple[str, str]]) -> frozenset[str]:
    """
    The request headers (lower-cased) never passed on as the client sent them:
    hop-by-hop headers, Content-Length, and those the gateway sets itself.
    """
    return frozenset(
        HOP_BY_HOP
        | GATEWAY_SET
        | {"content-length"}
        | {name.lower() for name, _ in gateway_headers}
    )


def forwarded_headers(
    request: Request,
    body: bytes,
    gateway_headers: Sequence[tuple[str, str]],
    dropped: frozenset[str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """
    The request headers a function sees.

    Hop-by-hop headers (and any the Connection header names) are dropped;
    Content-Length is recomputed; the gateway's own headers and the route's
    ``header_upstream`` replace whatever the client sent under those names.
    C{dropped} is L{dropped_headers} of the same header names, if known.

    A name with an underscore is dropped too, as nginx does by default
    (``underscores_in_headers off``): WSGI and CGI read ``_`` and ``-``
    alike, so ``X_Authenticated_User`` would reach a Flask app as the
    gateway's own ``X-Authenticated-User``.
    """
    if dropped is None:
        dropped = dropped_headers(gateway_headers)
    raw = request.requestHeaders
    connection = raw_values(raw, b"connection")
    if connection:
        dropped = dropped | {
            token.strip().lower() for value in connection for token in _text(value).split(",")
        }
    headers: list[tuple[str, str]] = []
    for raw_name, values in raw.getAllRawHeaders():
        name = _text(raw_name)
        if name.lower() not in dropped and "_" not in name:
            for raw_value in values:
                headers.append((name, _text(raw_value)))
    if body or request.method in (b"POST", b"PUT", b"PATCH"):
        headers.append(("Content-Length", str(len(body))))
    by_name: dict[str, tuple[str, str]] = {}
    for name, value in gateway_headers:
        by_name[name.lower()] = (name, value)
    headers.extend(by_name.values())
    return tuple(headers)


def health_reply(draining: bool) -> Reply:
    """
    200 while serving, 503 while draining, so load balancers stop sending.
    """
    if draining:
        return Reply(503, (JSON_TYPE,), b'{"status":"draining"}')
    return Reply(200, (JSON_TYPE,), b'{"status":"serving"}')


def error_reply(error: GatewayError, request_id: str) -> Reply:
    """
    The JSON error response for a failure; it never holds internal details.
    """
    body = json.dumps({"error": error.message, "request_id": request_id}).encode("utf-8")
    return Reply(error.status, (JSON_TYPE, *error.response_headers()), body)


def accepted_reply(request_id: str, result: InvokeResult) -> Reply:
    """
    The 202 for an asynchronous (``Event``) invocation Lambda accepted.
    """
    document = {"request_id": request_id, "aws_request_id": result.aws_request_id}
    return Reply(202, (JSON_TYPE,), json.dumps(document).encode("utf-8"))


def close_after(request: Request) -> None:
    """
    Make an HTTP/1.x connection close once this response is written.

    HTTP/2 has no such header: its streams end with the connection.
    """
    channel = request.channel
    if isinstance(channel, HTTPChannel):
        channel.persistent = False
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])


def write_reply(request: Request, reply: Reply, request_id: str) -> None:
    """
    Write a validated reply in one go, with a computed Content-Length.

    A 204 or 304 goes out with neither body nor Content-Length (RFC 9110
    sections 8.6, 15.3.5 and 15.4.5); a HEAD answer with the Content-Length
    a GET would have had but no body.  No Content-Type is ever made up here:
    each format has put its own default in the reply (twisted.web's would
    be text/html).
    """
    request.defaultContentType = None
    if reply.reason is None:
        request.setResponseCode(reply.status)
    else:
        request.setResponseCode(reply.status, reply.reason.encode("latin-1"))
    headers = request.responseHeaders
    headers.removeHeader(b"server")
    for name, value in reply.headers:
        headers.addRawHeader(name.encode("ascii"), value.encode("utf-8"))
    headers.setRawHeaders(b"x-request-id", [request_id.encode("ascii")])
    if reply.status in NO_CONTENT_STATUSES:
        headers.removeHeader(b"content-length")
    else:
        headers.setRawHeaders(b"content-length", [str(len(reply.body)).encode("ascii")])
        if reply.body and request.method != b"HEAD":
            request.write(reply.body)
    request.finish()


def body_length(request: Request, reply: Reply) -> int:
    """
    How many body bytes L{write_reply} sends for C{reply}.
    """
    if request.method == b"HEAD" or reply.status in NO_CONTENT_STATUSES:
        return 0
    return len(reply.body)
