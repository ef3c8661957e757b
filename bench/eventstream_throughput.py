"""
Throughput of the event-stream decoder against botocore's EventStreamBuffer.

Not a test: run it by hand and read the numbers.

    PYTHONPATH=src:. python bench/eventstream_throughput.py

Two inputs, each decoded by both decoders in the same run:

- 100 MB of PayloadChunk messages with 64 KB payloads, fed in 16 KB pieces;
- one 6 MB message fed in 1 KB pieces (where botocore's ``bytes +=`` buffer
  turns quadratic).

After every piece each decoder is asked for its complete messages, as the
gateway does when treq delivers bytes.  Best of three runs (one for
botocore on the quadratic case).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from botocore.eventstream import EventStreamBuffer
from tests.eventstream_encoder import invoke_complete, payload_chunk

from twisted_lambdagw.core.eventstream import MessageDecoder, ResponseStreamDecoder

MB = 1024 * 1024


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def ours(chunks: list[bytes]) -> int:
    decoder = MessageDecoder()
    payload = 0
    for chunk in chunks:
        for message in decoder.feed(chunk):
            payload += len(message.payload)
    decoder.finish()
    return payload


def ours_lambda(chunks: list[bytes]) -> int:
    decoder = ResponseStreamDecoder()
    payload = 0
    for chunk in chunks:
        for event in decoder.feed(chunk):
            payload += len(getattr(event, "payload", b""))
    decoder.finish()
    return payload


def botocore(chunks: list[bytes]) -> int:
    buffer = EventStreamBuffer()
    payload = 0
    for chunk in chunks:
        buffer.add_data(chunk)
        for message in buffer:
            payload += len(message.payload)
    return payload


def measure(
    name: str, decode: Callable[[list[bytes]], int], chunks: list[bytes], runs: int
) -> float:
    total = sum(map(len, chunks))
    best = float("inf")
    payload = 0
    for _ in range(runs):
        start = time.perf_counter()
        payload = decode(chunks)
        best = min(best, time.perf_counter() - start)
    rate = total / MB / best
    print(f"  {name:<28} {best * 1000:9.1f} ms  {rate:9.1f} MB/s  (payload {payload} bytes)")
    return rate


def main() -> None:
    print(f"Python {sys.version.split()[0]}")
    block = bytes(range(256)) * 256  # 64 KB
    stream = b"".join(payload_chunk(block) for _ in range(1600)) + invoke_complete()
    chunks = pieces(stream, 16 * 1024)
    print(f"100 MB of 64 KB messages in 16 KB pieces ({len(stream)} bytes, {len(chunks)} pieces)")
    measure("MessageDecoder", ours, chunks, 3)
    measure("ResponseStreamDecoder", ours_lambda, chunks, 3)
    measure("botocore EventStreamBuffer", botocore, chunks, 3)

    single = payload_chunk(bytes(range(256)) * (6 * MB // 256))
    chunks = pieces(single, 1024)
    print(f"one 6 MB message in 1 KB pieces ({len(single)} bytes, {len(chunks)} pieces)")
    measure("MessageDecoder", ours, chunks, 3)
    measure("botocore EventStreamBuffer", botocore, chunks, 1)


if __name__ == "__main__":
    main()
