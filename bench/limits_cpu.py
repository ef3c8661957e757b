"""
What a route's rate limit costs in CPU per request: the limit step with the
memory store and with a real Redis server, against no limit, in one run.

    .venv/bin/python bench/limits_cpu.py [--requests 20000] [--concurrency 50]

It starts its own ``redis-server`` on a free loopback port (Debian's
package), runs the C{limit-before-auth} step on real twisted.web requests
(a bucket far larger than the run, so every check is admitted and does the
full write), C{concurrency} checks in flight at a time, and prints this
process's CPU (user + system) per request for each, and what each store
adds to the baseline.  The gateway's own per-request CPU is in
C{bench/run.py}; the goal is that Redis adds at most 0.1 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from twisted.internet import defer, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.policy_fixtures import passage, route_from

from twisted_lambdagw.policies.limits.config import StoreConfig
from twisted_lambdagw.policies.limits.redis import RedisStore, connect
from twisted_lambdagw.policies.limits.step import StoreHealth, limit_step
from twisted_lambdagw.policies.limits.store import LimitsStore, MemoryStore


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(
    run_one: Callable[[int], Awaitable[object]], requests: int, concurrency: int
) -> float:
    """
    CPU milliseconds per request for C{requests} calls, C{concurrency} at a time.
    """
    started = cpu()
    for base in range(0, requests, concurrency):
        await defer.gatherResults([
            defer.Deferred.fromCoroutine(run_one(base + i))  # type: ignore[arg-type]
            for i in range(min(concurrency, requests - base))
        ])  # fmt: skip
    return (cpu() - started) * 1000 / requests


async def main(reactor: object, requests: int, concurrency: int) -> None:
    route = route_from("rate_limit = 1000000/s\nrate_burst = 100000000\nrate_key = client")
    assert route.limits is not None
    limits = route.limits
    clock: object = reactor
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    directory = tempfile.mkdtemp(prefix="limits-bench-")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no", "--logfile", os.path.join(directory, "log")],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        config = StoreConfig(kind="redis", url=f"redis://127.0.0.1:{port}/0", port=port,
                             host="127.0.0.1")  # fmt: skip
        client = connect(config, 0.25)
        redis = RedisStore(client, clock, url=config.url)  # type: ignore[arg-type]
        stores: dict[str, LimitsStore | None] = {
            "none": None,
            "memory": MemoryStore(clock),  # type: ignore[arg-type]
            "redis": redis,
        }
        # Each request is its own twisted.web request, its own client address.
        passages = [passage(route, remote=f"10.0.{i // 250}.{i % 250}") for i in range(2000)]

        results = {}
        for name, store in stores.items():
            if store is None:

                async def nothing(i: int) -> None:
                    del passages[i % 2000].answer_headers[:]

                run_one: Callable[[int], Awaitable[object]] = nothing
            else:
                step = limit_step(limits, store, StoreHealth(clock, name), route=route.prefix)  # type: ignore[arg-type]

                async def checked(i: int, step: object = step) -> None:
                    p = passages[i % 2000]
                    del p.answer_headers[:]
                    await step(p)  # type: ignore[operator]

                run_one = checked
            await measure(run_one, min(2000, requests), concurrency)  # warm up
            results[name] = await measure(run_one, requests, concurrency)
        await redis.close()
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"requests {requests}, concurrency {concurrency}, Python {sys.version.split()[0]}")
    print("| store | CPU ms/request | added to none |")
    print("|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.4f} | {value - results['none']:+.4f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    options = parser.parse_args()
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(
            main(reactor, options.requests, options.concurrency)
        )
    )
