"""
L{LocalInvoker}: the L{twisted_lambdagw.invokers.base.Invoker} that runs functions here.

It looks the function up on disk at every call (a stat, cheap enough for
the reactor thread), keeps one L{FunctionPool} per function and version,
replaces a pool's workers when the function's file changed, and turns what
the runtime reported into the same L{InvokeResult} an AWS invoke gives: a
function error is a result with ``function_error = "Unhandled"`` and the
runtime's error document as payload, not an exception.  For routes with
``stream = yes`` it is a L{twisted_lambdagw.invokers.base.StreamingInvoker} too:
L{LocalInvoker.invoke_stream} passes a custom runtime's streamed response on
as it is written.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_lambdagw.core.config import LocalConfig
from twisted_lambdagw.core.errors import InvokeFailed
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult

from .functions import FunctionSpec, command, environment, find_function, function_arn
from .pool import FunctionPool, PooledWorker
from .runtime_api import Invocation, Outcome
from .stream import LocalResponseStream
from .worker import INIT_TIMEOUT, LocalReactor, Worker


class LocalInvoker:
    """
    Runs functions from ``config.functions_dir`` in local runtime processes.

    ``environ`` is the gateway's environment; only its ``PATH`` reaches the
    functions.  A worker gets ``kill_grace`` seconds between TERM and KILL
    when stopped, and ``init_timeout`` seconds to start.  Call L{stop} when
    the gateway stops.
    """

    log = Logger()

    def __init__(
        self,
        reactor: LocalReactor,
        config: LocalConfig,
        *,
        environ: Mapping[str, str] | None = None,
        kill_grace: float = 2.0,
        init_timeout: float = INIT_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self._config = config
        self._functions_dir = os.path.abspath(config.functions_dir)
        self._environ = dict(os.environ if environ is None else environ)
        self._kill_grace = kill_grace
        self._init_timeout = init_timeout
        self._pools: dict[tuple[str, str], tuple[FunctionSpec, FunctionPool]] = {}
        self._stopped = False

    def pool(self, name: str, version: str = "$LATEST") -> FunctionPool | None:
        """
        The pool of a function that has been invoked, for inspection.
        """
        entry = self._pools.get((name, version))
        return entry[1] if entry is not None else None

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        spec, pool, invocation, deadline = self._prepare(call)
        if call.invocation_type == "Event":
            pool.invoke(invocation, deadline).addBoth(self._event_done, invocation, spec)
            return InvokeResult(b"", status=202, aws_request_id=invocation.request_id)
        outcome = await pool.invoke(invocation, deadline)
        return self._result(outcome, invocation, spec)

    async def invoke_stream(self, call: InvokeCall) -> LocalResponseStream:
        """
        Run a function whose response is passed on as the runtime writes it.

        The call's timeout bounds the wait for the runtime to start its
        response; a streamed response may then run for up to
        L{twisted_lambdagw.invokers.local.worker.STREAM_DEADLINE} seconds.
        Runtimes that cannot stream (all
        ``NAME.py`` functions: awslambdaric posts one buffered response)
        give their whole response as one piece.
        """
        spec, pool, invocation, deadline = self._prepare(call)
        stream = LocalResponseStream(invocation.request_id, spec.version)
        stream.attach(pool.invoke(replace(invocation, stream=stream), deadline))
        return stream

    def _prepare(self, call: InvokeCall) -> tuple[FunctionSpec, FunctionPool, Invocation, float]:
        if self._stopped:
            raise InvokeFailed("the gateway is stopping", detail="local backend stopped")
        version = call.qualifier or "$LATEST"
        spec = find_function(self._functions_dir, call.function, version)
        pool = self._pool_for(spec)
        deadline = self._reactor.seconds() + call.timeout
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            payload=call.payload,
            deadline_ms=int(deadline * 1000),
            function_arn=function_arn(spec, self._config.region),
            trace_id=call.trace_id or self._trace_id(),
            gateway_request_id=call.request_id,
        )
        return spec, pool, invocation, deadline

    async def stop(self) -> None:
        """
        Stop every worker of every function and wait until they are gone.
        """
        self._stopped = True
        pools = [pool for _, pool in self._pools.values()]
        self._pools.clear()
        await gatherResults([Deferred.fromCoroutine(pool.stop()) for pool in pools])

    def _pool_for(self, spec: FunctionSpec) -> FunctionPool:
        key = (spec.name, spec.version)
        entry = self._pools.get(key)
        if entry is None:
            pool = FunctionPool(
                spec.name,
                self._worker_factory(spec),
                self._reactor,
                concurrency=self._config.concurrency,
                queue_size=self._config.queue_size,
                idle_timeout=self._config.idle_timeout,
            )
            self._pools[key] = (spec, pool)
            return pool
        old, pool = entry
        if old != spec:
            self.log.info(
                "[{function}] {path} changed: replacing its workers",
                function=spec.name,
                path=spec.path,
            )
            pool.renew(self._worker_factory(spec))
            self._pools[key] = (spec, pool)
        return pool

    def _worker_factory(self, spec: FunctionSpec) -> Callable[[Callable[..., None]], Worker]:
        executable, args = command(spec, self._config)
        env = environment(spec, self._config, self._environ)

        def make_worker(on_exit: Callable[[PooledWorker], None]) -> Worker:
            return Worker(
                self._reactor,
                executable,
                args,
                env,
                spec.task_root,
                spec.name,
                on_exit,
                kill_grace=self._kill_grace,
                init_timeout=self._init_timeout,
            )

        return make_worker

    def _result(self, outcome: Outcome, invocation: Invocation, spec: FunctionSpec) -> InvokeResult:
        return InvokeResult(
            payload=outcome.payload,
            function_error=None if outcome.error_type is None else "Unhandled",
            aws_request_id=invocation.request_id,
            executed_version=spec.version,
        )

    def _event_done(
        self, result: Outcome | Failure, invocation: Invocation, spec: FunctionSpec
    ) -> None:
        if isinstance(result, Failure):
            self.log.warn(
                "[{function}] [{request_id}] event invocation failed: {reason} {detail}",
                function=spec.name,
                request_id=invocation.gateway_request_id,
                reason=result.getErrorMessage(),
                detail=getattr(result.value, "detail", ""),
            )
        elif result.error_type is not None:
            self.log.warn(
                "[{function}] [{request_id}] event invocation ended in a function error: {payload}",
                function=spec.name,
                request_id=invocation.gateway_request_id,
                payload=result.payload.decode("utf-8", "replace"),
            )

    def _trace_id(self) -> str:
        epoch = int(self._reactor.seconds())
        return f"Root=1-{epoch:08x}-{secrets.token_hex(12)};Sampled=0"
