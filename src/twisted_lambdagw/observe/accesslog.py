"""
The access log: one JSON object per request, on one line.

It is an observer of the resource's L{Exchange} records, so it reports
exactly what the metrics count.  It replaces twisted.web's own access log
(the gateway's Site writes none), because that one knows nothing of routes,
functions, request ids or invoke times.

Lines are written with a single C{write(2)} each on a descriptor opened
for appending: nothing is buffered in the process, so a crash loses no
line, and several processes can share one file without mixing lines.  The
file is opened when the service starts (before twistd gives up root, like
the listening ports) and can be reopened after rotation with L{reopen}.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.exchange import Exchange

STDOUT = "-"

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


class UTCStamps:
    """
    ISO 8601 UTC times with milliseconds; the part up to the second is
    formatted once per second, not once per request.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((when - second) * 1000):03d}Z"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def access_record(exchange: Exchange, stamp: Callable[[float], str]) -> dict[str, Any]:
    """
    The access log fields of one exchange.

    C{time} is when the request arrived; C{status} is 0 when the client
    went away before an answer; C{invoke_ms} is null when nothing was
    invoked, C{ttfb_ms} when nothing was written; C{stream_outcome} is
    null except on streamed routes.  C{outcome} is C{limited} for a
    request a rate limit or quota refused, and C{limited} says which
    (C{client:rate}, C{user:quota}...).  The path is without its query
    string, which may carry tokens; request headers are never logged.
    """
    return {
        "time": stamp(exchange.started),
        "request_id": exchange.request_id,
        "remote": exchange.remote,
        "method": exchange.method,
        "path": exchange.path,
        "route": exchange.route,
        "function": exchange.function,
        "qualifier": exchange.qualifier,
        "status": exchange.status,
        "bytes_out": exchange.bytes_out,
        "duration_ms": _ms(exchange.duration),
        "invoke_ms": _ms(exchange.invoke_duration),
        "ttfb_ms": _ms(exchange.time_to_first_byte),
        "aws_request_id": exchange.aws_request_id,
        "executed_version": exchange.executed_version,
        "function_error": exchange.function_error,
        "user": exchange.user,
        "authorizer": exchange.authorizer,
        "outcome": "limited" if exchange.limited else exchange.outcome,
        "limited": exchange.limited,
        "stream_outcome": exchange.stream_outcome,
        "error": exchange.error,
        "error_code": exchange.error_code,
    }


Opener = Callable[[str], int]


def open_for_append(target: str) -> int:
    """
    A descriptor appending to C{target}, or a copy of stdout for C{-}.
    """
    if target == STDOUT:
        return os.dup(1)
    return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


class AccessLog(Service):
    """
    The access log of one gateway: an exchange observer, and the service
    that owns its file.

    Records that arrive while the file is not open (before the service
    starts, after it stops) are dropped.

    @param target: C{-} for stdout, or a file path.
    @param source: where C{target} came from, for error messages.
    @param opener: how the target is opened; by default L{open_for_append}.
    @param worker: with C{workers = N}, which process this is (0 is the
        parent): each record gets a C{worker} field, as the processes share
        the log.
    """

    log = Logger()

    def __init__(
        self,
        target: str,
        *,
        source: str = "[gateway] access_log",
        opener: Opener = open_for_append,
        worker: int | None = None,
    ) -> None:
        self.target = target
        self._worker = worker
        self._source = source
        self._opener = opener
        self._fd: int | None = None
        self._stamp = UTCStamps()

    def __call__(self, exchange: Exchange) -> None:
        fd = self._fd
        if fd is None:
            return
        record = access_record(exchange, self._stamp)
        if self._worker is not None:
            record["worker"] = self._worker
        line = (_encode(record) + "\n").encode("ascii")
        try:
            written = os.write(fd, line)
            while written < len(line):  # only a pipe or a signal splits a write
                line = line[written:]
                written = os.write(fd, line)
        except OSError as e:
            self.log.error(
                "cannot write the access log {target}: {reason}",
                target=self.target,
                reason=e.strerror or str(e),
            )

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._fd is None:
            self._fd = self._open()

    def startService(self) -> None:
        super().startService()
        if self._fd is None:
            self._fd = self._open()

    def stopService(self) -> None:
        super().stopService()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def reopen(self) -> None:
        """
        Open the target again, as after log rotation moved the old file.

        If it cannot be opened, the old file is kept and the error logged.
        """
        if self._fd is None or self.target == STDOUT:
            return
        try:
            fd = self._open()
        except ConfigError as e:
            self.log.error("{error}; still writing to the old file", error=str(e))
            return
        old, self._fd = self._fd, fd
        os.close(old)
        self.log.info("reopened the access log {target}", target=self.target)

    def _open(self) -> int:
        try:
            return self._opener(self.target)
        except OSError as e:
            raise ConfigError(
                f"{self._source}: cannot open {self.target!r}: {e.strerror or e}"
            ) from None
