"""
The daemon's log as JSON lines, for log collectors.

``twistd --logger twisted_lambdagw.observe.logs.json_observer -n lambdagw ...`` writes
one flat JSON object per log event to stdout::

    {"time": "2024-05-01T12:00:00.123Z", "level": "warn",
     "namespace": "twisted_lambdagw.server.resource.GatewayResource",
     "message": "function hello failed (Unhandled): ...",
     "function": "hello", "request_id": "6f1c...", ...}

``time``, ``level``, ``namespace`` and ``message`` (the event formatted as
text) come first; then the event's own fields whose values are plain
strings, numbers, booleans or null.  Twisted's ``log_*`` bookkeeping and
anything structured are left out; a logged failure adds ``traceback``.  An
event field that has one of the first four names is written with a
``field_`` prefix.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

RESERVED = ("time", "level", "namespace", "message", "traceback")

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _stamp(when: float) -> str:
    second = int(when)
    prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{int((when - second) * 1000):03d}Z"


def _simple(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int)


def flat_event(event: LogEvent) -> dict[str, Any]:
    """
    The JSON object for one event.
    """
    level = event.get("log_level")
    when = event.get("log_time")
    record: dict[str, Any] = {
        "time": _stamp(time.time() if when is None else when),
        "level": getattr(level, "name", None),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    for key, value in event.items():
        if key.startswith("log_") or not _simple(value):
            continue
        record[f"field_{key}" if key in RESERVED else key] = value
    return record


def stack_text(trace: object) -> str | None:
    """
    A function's stack trace as one string, for a log field.

    Lambda runtimes send a list of lines, which observers that keep only
    plain fields (this module's) would drop.
    """
    if isinstance(trace, list):
        return "\n".join(str(line).rstrip("\n") for line in trace)
    return None if trace is None else str(trace)


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each event as one line of JSON to a text stream, and flushes it.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: LogEvent) -> None:
        self._stream.write(_encode(flat_event(event)) + "\n")
        self._stream.flush()


def json_observer() -> ILogObserver:
    """
    The observer factory for ``twistd --logger``: JSON lines on stdout.

    It takes the process's real stdout, not C{sys.stdout}: twistd soon
    replaces that with a stream that turns writes into log events, which
    this observer would then receive back.
    """
    stream = sys.__stdout__
    if stream is None:
        raise RuntimeError("there is no stdout to log to")
    return JSONLinesObserver(stream)
