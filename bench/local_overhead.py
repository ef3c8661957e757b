"""
The warm overhead of the local backend: what a local invoke adds to a handler.

Runs a no-op handler (bench/functions/noop.py) through LocalInvoker, after a
warm-up, and reports latency percentiles minus the handler's own run time,
which the handler measures and returns.  With ``--http`` the requests go
through the whole gateway instead: a loopback HTTP server with the real
GatewayResource and the httpjson format, and a treq client with a
persistent connection, all in this one process.

    python bench/local_overhead.py                 # 2,000 invokes, one at a time
    python bench/local_overhead.py --http          # the same over HTTP
    python bench/local_overhead.py --parallel 4    # 4 callers, 4 warm workers

This is a measurement, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react

from twisted_lambdagw.core.config import LocalConfig, RouteConfig
from twisted_lambdagw.invokers.base import InvokeCall
from twisted_lambdagw.invokers.local import LocalInvoker

FUNCTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functions")

Caller = Callable[[], Awaitable[int]]
"""One request; returns the handler's own time in nanoseconds."""


def direct_caller(invoker: LocalInvoker) -> Caller:
    async def call() -> int:
        result = await invoker.invoke(InvokeCall("noop", b"{}", request_id="bench", timeout=10))
        return int(json.loads(result.payload)["handler_ns"])

    return call


async def http_caller(reactor: Any, invoker: LocalInvoker, parallel: int) -> Caller:
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.server import Site

    from twisted_lambdagw.core.formats import get_format
    from twisted_lambdagw.server.resource import Binding, GatewayResource

    route = RouteConfig(prefix="/lambda/", backend="local", timeout=10.0)
    resource = GatewayResource([Binding(route, invoker, get_format("httpjson"))], reactor)
    port = reactor.listenTCP(0, Site(resource, reactor=reactor), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = parallel
    client = HTTPClient(Agent(reactor, pool=pool))
    url = f"http://127.0.0.1:{port.getHost().port}/lambda/noop"

    async def call() -> int:
        response = await client.get(url)
        body = await response.content()
        if response.code != 200:
            raise RuntimeError(f"HTTP {response.code}: {body!r}")
        return int(json.loads(body)["handler_ns"])

    return call


async def measure(call: Caller, requests: int, parallel: int) -> list[float]:
    """
    Overheads in seconds: each request's latency minus the handler's own time.
    """
    overheads: list[float] = []

    async def loop(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter_ns()
            handler_ns = await call()
            overheads.append((time.perf_counter_ns() - started - handler_ns) / 1e9)

    share, extra = divmod(requests, parallel)
    loops = [loop(share + (1 if i < extra else 0)) for i in range(parallel)]
    await gatherResults([Deferred.fromCoroutine(each) for each in loops])
    return overheads


def report(label: str, overheads: list[float], wall: float) -> None:
    ordered = sorted(overheads)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    print(
        f"{label}: n={len(ordered)}  median={statistics.median(ordered) * 1000:.3f} ms"
        f"  p90={pct(90):.3f} ms  p99={pct(99):.3f} ms  max={ordered[-1] * 1000:.3f} ms"
        f"  ({len(ordered) / wall:.0f} req/s)"
    )


async def main(reactor: Any, options: argparse.Namespace) -> None:
    config = LocalConfig(functions_dir=FUNCTIONS, concurrency=options.parallel)
    invoker = LocalInvoker(reactor, config)
    try:
        if options.http:
            call = await http_caller(reactor, invoker, options.parallel)
        else:
            call = direct_caller(invoker)
        await measure(call, options.warmup, options.parallel)
        started = time.perf_counter()
        overheads = await measure(call, options.requests, options.parallel)
        wall = time.perf_counter() - started
        via = "HTTP gateway" if options.http else "LocalInvoker"
        report(f"warm overhead via {via}, {options.parallel} at a time", overheads, wall)
    finally:
        await invoker.stop()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--http", action="store_true", help="go through the HTTP gateway")
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, options)))
