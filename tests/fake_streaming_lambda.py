"""
A fake Lambda that answers InvokeWithResponseStream with real event-stream bytes.

L{FakeStreamingLambda} is a twisted.web resource for
``POST /2021-11-15/functions/{name}/response-streaming-invocations``.  The
function name picks a scenario (see L{SCENARIOS}); each scenario is a list
of steps: bytes to C{request.write}, a L{Delay} measured on the injected
clock, or L{Drop} to close the connection mid-response.  Writes are cut into
uneven pieces, so messages, the prelude and its delimiter straddle writes.

Serve it with C{StubTreq(FakeStreamingLambda(clock))} (then
C{clock.advance} for delays and C{stub.flush()} to move the bytes), or on a
loopback port in a real C{Site} with the real reactor as the clock.

Large scenarios (``bulk-<bytes>``) are generated lazily and honour
backpressure: the playback is a streaming producer that stops writing while
the transport is paused, and yields to the clock every C{burst} bytes.
Every call is recorded in C{invocations}, with whether the caller went away
before the end (C{cancelled}).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from .eventstream_encoder import error_message, flip, invoke_complete, payload_chunk

PATH = re.compile(rb"/2021-11-15/functions/([^/]+)/response-streaming-invocations")
DELIMITER = b"\0" * 8
PIECE_SIZES = (1, 7, 300, 13, 5000, 2, 70000)
"""Sizes the response bytes are cut into, in turn."""


@dataclass(frozen=True, slots=True)
class Delay:
    """
    Wait this many seconds (on the injected clock) before the next step.
    """

    seconds: float


@dataclass(frozen=True, slots=True)
class Drop:
    """
    Close the connection without finishing the chunked response.
    """


Step = bytes | Delay | Drop


@dataclass
class Invocation:
    """
    One call the fake received, and how it ended.
    """

    function: str
    qualifier: str | None
    headers: dict[str, list[str]]
    payload: bytes
    finished: bool = False
    cancelled: bool = False
    bytes_written: int = 0


Scenario = Callable[[Invocation, float], Iterable[Step]]
"""Builds the steps for one call, given the call and the configured delay."""


def prelude(
    status: int = 200,
    headers: Mapping[str, str | list[str]] | None = None,
    cookies: list[str] | None = None,
) -> bytes:
    """
    The http-integration-response prelude, as Node's HttpResponseStream writes it.
    """
    document: dict[str, object] = {"statusCode": status}
    if headers is not None:
        document["headers"] = dict(headers)
    if cookies is not None:
        document["cookies"] = cookies
    return json.dumps(document, separators=(",", ":")).encode() + DELIMITER


def body_lines(count: int) -> list[bytes]:
    """
    The body chunks most scenarios stream: ``line N`` with a newline.
    """
    return [b"line %d\n" % (n,) for n in range(count)]


PRELUDE_HEADERS: dict[str, str | list[str]] = {
    "content-type": "text/plain; charset=utf-8",
    "x-fake": ["one", "two"],
}
PRELUDE = prelude(201, PRELUDE_HEADERS, ["a=1; Path=/", "b=2"])


def _streamed_prelude() -> list[bytes]:
    """
    The prelude split across three chunks, the delimiter cut in two.
    """
    cut = len(PRELUDE) - 5
    return [
        payload_chunk(PRELUDE[:10]),
        payload_chunk(PRELUDE[10:cut]),
        payload_chunk(PRELUDE[cut:]),
    ]


def _with_prelude(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(20))
    yield invoke_complete()


def _raw(call: Invocation, delay: float) -> Iterable[Step]:
    yield from map(payload_chunk, body_lines(20))
    yield invoke_complete()


def _echo(call: Invocation, delay: float) -> Iterable[Step]:
    if call.payload:
        yield payload_chunk(call.payload)
    yield invoke_complete()


def _empty(call: Invocation, delay: float) -> Iterable[Step]:
    yield invoke_complete()


def _slow(call: Invocation, delay: float) -> Iterable[Step]:
    """
    Server-sent events, one every C{delay} seconds.
    """
    yield payload_chunk(prelude(200, {"content-type": "text/event-stream"}))
    for n in range(5):
        yield payload_chunk(b"data: event %d\n\n" % (n,))
        yield Delay(delay)
    yield invoke_complete()


def _midstream_error(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(3))
    yield invoke_complete(
        "Unhandled",
        json.dumps({"errorType": "Error", "errorMessage": "boom", "trace": ["at handler"]}),
        "bG9nIHRhaWw=",
    )


def _error_before_body(call: Invocation, delay: float) -> Iterable[Step]:
    yield invoke_complete("Unhandled", json.dumps({"errorMessage": "failed at once"}))


def _corrupt_crc(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(3))
    bad = payload_chunk(b"this chunk is damaged\n")
    yield flip(bad, len(bad) - 1)
    yield from map(payload_chunk, body_lines(3))
    yield invoke_complete()


def _cut(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(3))


def _cut_mid_message(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(3))
    partial = payload_chunk(b"never finished\n")
    yield partial[: len(partial) // 2]


def _drop(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(3))
    yield Drop()


def _stream_error(call: Invocation, delay: float) -> Iterable[Step]:
    yield from _streamed_prelude()
    yield from map(payload_chunk, body_lines(2))
    yield error_message("ServiceException", "the stream failed")


def _bulk(size: int) -> Scenario:
    """
    C{size} bytes of body in 64 KB chunks, generated as they are sent.
    """

    def steps(call: Invocation, delay: float) -> Iterator[Step]:
        yield payload_chunk(prelude(200, {"content-type": "application/octet-stream"}))
        block = bytes(range(256)) * 256
        remaining = size
        while remaining > 0:
            piece = block[:remaining]
            remaining -= len(piece)
            yield payload_chunk(piece)
        yield invoke_complete()

    return steps


SCENARIOS: dict[str, Scenario] = {
    "prelude": _with_prelude,
    "raw": _raw,
    "echo": _echo,
    "empty": _empty,
    "slow": _slow,
    "midstream-error": _midstream_error,
    "error-before-body": _error_before_body,
    "corrupt-crc": _corrupt_crc,
    "cut": _cut,
    "cut-mid-message": _cut_mid_message,
    "drop": _drop,
    "stream-error": _stream_error,
}
"""
Function name to scenario.  Also: ``bulk-<bytes>`` streams that many body
bytes; ``missing`` answers 404 and ``throttled`` 429 before any streaming.
"""

AWS_ERRORS = {
    "missing": (404, "ResourceNotFoundException", "Function not found: missing"),
    "throttled": (429, "TooManyRequestsException", "Rate exceeded"),
}


class FakeStreamingLambda(Resource):
    """
    Lambda's InvokeWithResponseStream, playing back canned scenarios.
    """

    isLeaf = True

    def __init__(
        self,
        clock: IReactorTime,
        *,
        delay: float = 1.0,
        burst: int = 1024 * 1024,
        scenarios: Mapping[str, Scenario] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._delay = delay
        self._burst = burst
        self._scenarios = {**SCENARIOS, **(scenarios or {})}
        self._request_ids = itertools.count(1)
        self.invocations: list[Invocation] = []

    def render_POST(self, request: Request) -> bytes | int:
        match = PATH.fullmatch(request.path)
        if match is None:
            return self._aws_error(request, 404, "UnknownOperationException", "no such operation")
        name = unquote(match.group(1).decode("ascii"))
        qualifier = request.args.get(b"Qualifier", [None])[-1]
        content = request.content
        call = Invocation(
            function=name,
            qualifier=qualifier.decode() if qualifier is not None else None,
            headers={
                key.decode().lower(): [v.decode() for v in values]
                for key, values in request.requestHeaders.getAllRawHeaders()
            },
            payload=content.read() if content is not None else b"",
        )
        self.invocations.append(call)
        function = name.partition(":")[0]
        request.setHeader(b"x-amzn-RequestId", b"fake-%d" % (next(self._request_ids),))

        if function in AWS_ERRORS:
            status, code, text = AWS_ERRORS[function]
            call.finished = True
            return self._aws_error(request, status, code, text)
        scenario = self._scenario(function)
        if scenario is None:
            call.finished = True
            return self._aws_error(
                request, 404, "ResourceNotFoundException", f"Function not found: {name}"
            )
        if call.headers.get("x-amz-invocation-type") == ["DryRun"]:
            call.finished = True
            request.setResponseCode(204)
            return b""

        request.setHeader(b"Content-Type", b"application/vnd.amazon.eventstream")
        request.setHeader(b"X-Amz-Executed-Version", b"$LATEST")
        _Playback(request, call, iter(scenario(call, self._delay)), self._clock, self._burst)
        return NOT_DONE_YET

    def _scenario(self, function: str) -> Scenario | None:
        if function in self._scenarios:
            return self._scenarios[function]
        size = function.removeprefix("bulk-")
        if function.startswith("bulk-") and size.isdigit():
            return _bulk(int(size))
        return None

    def _aws_error(self, request: Request, status: int, code: str, text: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"x-amzn-ErrorType", code.encode())
        return json.dumps({"Type": "User", "Message": text}).encode()


@implementer(IPushProducer)
class _Playback:
    """
    Writes one scenario's steps to one request, as a streaming producer.
    """

    def __init__(
        self,
        request: Request,
        call: Invocation,
        steps: Iterator[Step],
        clock: IReactorTime,
        burst: int,
    ) -> None:
        self._request = request
        self._call = call
        self._steps = steps
        self._clock = clock
        self._burst = burst
        self._turn = 0
        self._pending: IDelayedCall | None = None
        self._paused = False
        self._running = False
        self._done = False
        request.notifyFinish().addErrback(self._lost)
        request.registerProducer(self, True)
        self._run()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._pending is None and not self._running and not self._done:
            self._run()

    def stopProducing(self) -> None:
        self._stop()

    def _lost(self, reason: Failure) -> None:
        if not self._done:
            self._call.cancelled = True
        self._stop()

    def _stop(self) -> None:
        self._done = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        """
        Cut C{data} by L{PIECE_SIZES}, the rotation going on across steps.
        """
        offset = 0
        while offset < len(data):
            size = PIECE_SIZES[self._turn % len(PIECE_SIZES)]
            self._turn += 1
            yield data[offset : offset + size]
            offset += size

    def _resume_later(self, seconds: float) -> None:
        def resume() -> None:
            self._pending = None
            self._run()

        self._pending = self._clock.callLater(seconds, resume)

    def _run(self) -> None:
        self._running = True
        try:
            written = 0
            while not self._paused and not self._done:
                step = next(self._steps, None)
                if step is None:
                    self._end(finish=True)
                elif isinstance(step, Delay):
                    self._resume_later(step.seconds)
                    return
                elif isinstance(step, Drop):
                    self._end(finish=False)
                else:
                    for piece in self._pieces(step):
                        self._request.write(piece)
                    written += len(step)
                    self._call.bytes_written += len(step)
                    if written >= self._burst:
                        self._resume_later(0)
                        return
        finally:
            self._running = False

    def _end(self, *, finish: bool) -> None:
        self._done = True
        self._call.finished = True
        self._request.unregisterProducer()
        if finish:
            self._request.finish()
        else:
            self._request.loseConnection()
