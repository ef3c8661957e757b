"""
Response streaming through the gateway: time to first byte, throughput, memory.

Not a test: run it by hand and read the numbers.

    PYTHONPATH=src:. python bench/stream_bench.py [--size-mb 100] [--rounds 200]

The fake streaming Lambda (tests/fake_streaming_lambda.py, real event-stream
frames) and the client run in this process; the gateway runs in a child
process (this script with ``--serve``), as it would in production, so its
memory can be measured on its own.

1. Time to first byte, ``raw`` scenario (20 small chunks), sequential
   requests on fresh connections: direct (POST to the fake, first payload
   decoded) against through the gateway (GET, first body byte).  Median and
   90th percentile; the difference is what the gateway adds.
2. Throughput, ``bulk-N`` (64 KB PayloadChunk messages): direct read with
   the event-stream decoder, against a plain read through the gateway.
3. Memory: a client reading slowly (pauses 10 ms after every 256 KB)
   streams N MB through the gateway; the gateway process's RSS is sampled
   every 20 ms.  Then the same with the gateway's pause disabled (the relay
   ignores pauseProducing), to show what backpressure saves.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

MB = 1024 * 1024
ROUTES = "\n[route:/s/]\nstream = yes\ntimeout = 60s\n"


def serve(port: int, lambda_url: str, no_backpressure: bool) -> None:
    """
    The gateway, alone in this process, on 127.0.0.1:port.
    """
    from tests.gateway_fixtures import config_from
    from tests.streaming_fixtures import aws_section
    from twisted.internet import reactor

    from twisted_lambdagw.gateway import Gateway, default_pool

    if no_backpressure:
        from twisted_lambdagw.server.streaming import StreamRelay

        StreamRelay.pauseProducing = lambda self: None  # type: ignore[method-assign]
    config = config_from(aws_section(lambda_url) + ROUTES)
    gateway = Gateway(
        config, reactor, pool=default_pool(reactor), endpoint_for=lambda region, url: url or ""
    )
    reactor.listenTCP(port, gateway.site(), interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Gateway:
    def __init__(self, lambda_url: str, no_backpressure: bool = False) -> None:
        self.port = free_port()
        command = [sys.executable, __file__, "--serve", str(self.port), lambda_url]
        if no_backpressure:
            command.append("--no-backpressure")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, env=os.environ.copy())
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == b"ready", line
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


async def run(args: argparse.Namespace) -> None:
    from tests.fake_streaming_lambda import FakeStreamingLambda
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import Protocol
    from twisted.internet.task import LoopingCall
    from twisted.python.failure import Failure
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.server import Site

    from twisted_lambdagw.core.eventstream import PayloadChunk, ResponseStreamDecoder

    clock: Any = reactor
    fake = FakeStreamingLambda(clock, burst=4 * MB)
    lambda_port = clock.listenTCP(0, Site(fake), interface="127.0.0.1")
    lambda_url = f"http://127.0.0.1:{lambda_port.getHost().port}"
    stream_path = "/2021-11-15/functions/{}/response-streaming-invocations"

    class Reader(Protocol):
        def __init__(self, decode: bool, every: int = 0) -> None:
            self.decoder = ResponseStreamDecoder() if decode else None
            self.every = every
            self.since = 0
            self.received = 0
            self.first: float | None = None
            self.done: Deferred[None] = Deferred()

        def dataReceived(self, data: bytes) -> None:
            if self.decoder is not None:
                for event in self.decoder.feed(data):
                    if isinstance(event, PayloadChunk):
                        self.body(len(event.payload))
            else:
                self.body(len(data))
            if self.every:
                self.since += len(data)
                if self.since >= self.every:
                    self.since = 0
                    transport: Any = self.transport
                    transport.pauseProducing()
                    clock.callLater(0.01, transport.resumeProducing)

        def body(self, size: int) -> None:
            if self.first is None and size:
                self.first = time.perf_counter()
            self.received += size

        def connectionLost(self, reason: Failure | None = None) -> None:
            self.done.callback(None)

    async def fetch(
        url: str, direct: bool, every: int = 0, persistent: bool = False
    ) -> tuple[float, float, int]:
        pool = HTTPConnectionPool(clock, persistent=persistent)
        agent = Agent(clock, pool=pool)
        start = time.perf_counter()
        if direct:
            response = await agent.request(b"POST", url.encode())
        else:
            response = await agent.request(b"GET", url.encode())
        reader = Reader(decode=direct, every=every)
        response.deliverBody(reader)
        await reader.done
        end = time.perf_counter()
        await pool.closeCachedConnections()
        assert reader.first is not None
        return reader.first - start, end - start, reader.received

    gateway = Gateway(lambda_url)
    try:
        print(f"1. time to first byte, 'raw' scenario, {args.rounds} sequential requests")
        results = {}
        for label, direct, base in (
            ("direct  ", True, lambda_url + stream_path),
            ("gateway ", False, gateway.url + "/s/{}"),
        ):
            times = []
            for _ in range(args.rounds):
                first, _, _ = await fetch(base.format("raw"), direct)
                times.append(first * 1000)
            times.sort()
            median = statistics.median(times)
            p90 = times[int(len(times) * 0.9)]
            results[label] = median
            print(f"   {label} median {median:6.2f} ms   p90 {p90:6.2f} ms")
        added = results["gateway "] - results["direct  "]
        print(f"   added by the gateway (median): {added:.2f} ms")

        size = args.size_mb * MB
        print(f"2. throughput, bulk-{size} ({args.size_mb} MB in 64 KB messages), best of 3")
        for label, direct, base in (
            ("direct (decoded)", True, lambda_url + stream_path),
            ("through gateway ", False, gateway.url + "/s/{}"),
        ):
            best = 0.0
            for _ in range(3):
                _, total, received = await fetch(base.format(f"bulk-{size}"), direct)
                assert received >= size, received  # direct: the prelude is payload too
                best = max(best, size / MB / total)
            print(f"   {label} {best:7.1f} MB/s")
    finally:
        gateway.stop()

    print(f"3. gateway RSS while a slow client reads {args.size_mb} MB")
    for label, no_backpressure in (("backpressure", False), ("pause ignored", True)):
        gateway = Gateway(lambda_url, no_backpressure=no_backpressure)
        try:
            pid = gateway.process.pid
            samples: list[int] = []
            sampler = LoopingCall(lambda s=samples, p=pid: s.append(rss(p)))
            baseline = rss(pid)
            sampler.start(0.02)
            _, total, received = await fetch(
                gateway.url + f"/s/bulk-{size}", False, every=256 * 1024
            )
            sampler.stop()
            assert received == size
            print(
                f"   {label:13}: RSS before {baseline / MB:6.1f} MB, peak {max(samples) / MB:6.1f}"
                f" MB (+{(max(samples) - baseline) / MB:5.1f} MB), {total:.1f} s,"
                f" {len(samples)} samples"
            )
        finally:
            gateway.stop()
    await lambda_port.stopListening()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "LAMBDA_URL"))
    parser.add_argument("--no-backpressure", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.no_backpressure)
        return

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    def go() -> None:
        done = Deferred.fromCoroutine(run(args))
        done.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))
        done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
