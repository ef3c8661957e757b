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
Routes with C{stream = yes} hand the response to L{streaming} instead,
which writes it as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_lambdagw.core.errors import (
    FunctionFailed,
    GatewayError,
    InvokeFailed,
    InvokeTimeout,
    NotFound,
    URITooLong,
)
from twisted_lambdagw.core.exchange import Exchange, ExchangeObserver
from twisted_lambdagw.core.formats import EventFormat
from twisted_lambdagw.core.messages import IncomingRequest, Reply
from twisted_lambdagw.core.proxies import Origin, TrustedProxies
from twisted_lambdagw.core.routing import Target
from twisted_lambdagw.invokers.base import (
    InvokeCall,
    Invoker,
    InvokeResult,
    StreamingInvoker,
)
from twisted_lambdagw.net.deadlines import Deadlines
from twisted_lambdagw.net.headers import raw_values
from twisted_lambdagw.observe.logs import log_function_error
from twisted_lambdagw.policies.authorizers._common import authorizer_document
from twisted_lambdagw.policies.build import open_chain
from twisted_lambdagw.policies.chain import Chain, Passage
from twisted_lambdagw.policies.inflight import InFlight

from .forwarding import (
    REQUEST_ID,
    checked_path,
    dropped_headers,
    forwarded_headers,
    invocation_type,
    last_text,
    new_request_id,
    text,
    trace_id,
)
from .replies import (
    accepted_reply,
    body_length,
    close_after,
    error_reply,
    health_reply,
    write_reply,
)
from .request import GatewayRequest
from .state import RoutingState
from .streaming import StreamSettings, serve_stream

if TYPE_CHECKING:
    from twisted_lambdagw.core.config import RouteConfig, TrustedProxy

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
            method=text(request.method),
            path=text(request.path),
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
            passage = serving.passage
            if passage is not None:
                # The passage holds the request, whose connection-lost
                # watcher holds the serving: let go of it, so the request
                # is freed by its reference count, not by the collector.
                serving.passage = None
                passage.finish()
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
            value = given[-1].decode("latin-1")
            if REQUEST_ID.fullmatch(value):
                return value
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
            return [text(v) for v in headers.getRawHeaders(name, [])]

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
            invocation_type=invocation_type(route.invocation_type),
            request_id=request_id,
            timeout=route.timeout,
            trace_id=trace_id(request.requestHeaders),
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
            log_function_error(
                self.log,
                result.payload,
                function=call.function,
                kind=result.function_error,
                aws_request_id=result.aws_request_id,
                request_id=request_id,
            )
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
        host = last_text(request.requestHeaders, b"host") or f"{getattr(address, 'host', '')}"
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
            function_path=(
                unquote(target.function_raw_path)
                if "%" in target.function_raw_path
                else target.function_raw_path
            ),
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
            authorizer=None if principal is None else authorizer_document(principal),
        )

    def _log_error(self, request: Request, request_id: str, error: GatewayError) -> None:
        # The path, not the URI: a query string may carry a token.
        self.log.info(
            "{method} {path}: {status} {error} {detail}",
            method=text(request.method),
            path=text(request.path),
            status=error.status,
            error=error.message,
            detail=error.detail,
            request_id=request_id,
        )


class _Invocation:
    """
    One invocation, unary or streamed, for as long as it runs: its start
    and end times and the code of a failure recorded on the exchange for
    the access log and the metrics.  (Admission, C{max_in_flight}, is the
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
