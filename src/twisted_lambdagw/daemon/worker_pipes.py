"""
What a worker and its parent say to each other through the worker's pipes:
the L{WorkerHandoff} and later messages (a configuration to serve,
L{REOPEN}) on its stdin, its log events as JSON lines on its stderr
(L{LogRelay}).
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    eventFromJSON,
)

from twisted_lambdagw.core.config import Config

Observer = Callable[[LogEvent], None]
"""Where log events go: a log publisher, or anything that takes events."""

MAX_LINE = 1024 * 1024
"""A worker's stderr line longer than this is logged in pieces."""

RECORD_SEPARATOR = b"\x1e"
"""Starts each JSON log event a worker writes (RFC 7464)."""

_HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class WorkerHandoff:
    """
    What a worker process is told by its parent, on its stdin.

    C{sockets} holds one C{(file descriptor, address family)} per C{listen}
    line, in order.  C{options} are the parent's plugin options (plain
    values only); C{config} is the parent's parsed configuration, the
    C{--listen} overrides applied.
    """

    worker_id: int
    config: Config
    options: Mapping[str, object]
    sockets: tuple[tuple[int, int], ...]
    reactor_module: str | None = None

    def encode(self) -> bytes:
        # pickle, as multiprocessing hands work to its processes: the bytes
        # go from this process to its own child over a pipe nothing else can
        # write to.
        data = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        return _HEADER.pack(len(data)) + data

    @classmethod
    def read(cls, fd: int) -> WorkerHandoff:
        """
        Read a handoff from C{fd}, blocking; raises ValueError if there is none.
        """
        (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
        handoff = pickle.loads(_read_exactly(fd, size))  # noqa: S301 (see encode)
        if not isinstance(handoff, cls):
            raise ValueError(f"not a worker handoff: {type(handoff).__name__}")
        return handoff


REOPEN = "reopen the access log"
"""The message that has a worker reopen its access log."""


def encode_message(message: Config | str) -> bytes:
    """
    A message as the parent writes it to a worker's pipe after the handoff
    (a configuration to serve, or L{REOPEN}): its length, then its pickle
    (see L{WorkerHandoff.encode}).
    """
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class ConfigFrames:
    """
    Splits what a worker reads on its pipe into the messages sent: each
    configuration goes to C{received}, each L{REOPEN} calls C{reopen}.
    """

    def __init__(
        self, received: Callable[[Config], None], reopen: Callable[[], None] = lambda: None
    ) -> None:
        self._received = received
        self._reopen = reopen
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                return
            data, self._buffer = self._buffer[_HEADER.size : end], self._buffer[end:]
            message = pickle.loads(data)  # noqa: S301 (see WorkerHandoff.encode)
            if isinstance(message, Config):
                self._received(message)
            elif message == REOPEN:
                self._reopen()


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise ValueError("the parent closed the pipe before the handoff was complete")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def plain_options(options: Mapping[str, object]) -> dict[str, object]:
    """
    The plugin options that are plain data, to hand to a worker.
    """
    plain = (str, int, float, bool, type(None))

    def is_plain(value: object) -> bool:
        if isinstance(value, list | tuple):
            return all(isinstance(item, plain) for item in value)
        return isinstance(value, plain)

    return {key: value for key, value in options.items() if is_plain(value)}


class LogRelay:
    """
    Turns a worker's stderr into events in this process's log.

    JSON events (as L{log_to_parent} writes them) are re-emitted as they
    were, with a C{worker} field and C{worker N} in front of their system;
    any other line (a crash before logging started) is logged as a warning.
    """

    def __init__(self, worker_id: int, observer: Observer) -> None:
        self.worker_id = worker_id
        self._observer = observer
        self._log = Logger(
            observer=cast(ILogObserver, observer), namespace="twisted_lambdagw.daemon.workers"
        )
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        *lines, rest = (self._buffer + data).split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._buffer = rest
        for line in lines:
            self._line(line)

    def flush(self) -> None:
        rest, self._buffer = self._buffer, b""
        if rest:
            self._line(rest)

    def _line(self, line: bytes) -> None:
        if line.startswith(RECORD_SEPARATOR):
            try:
                event = eventFromJSON(line[1:].decode("utf-8"))
            except ValueError:
                event = None
            if isinstance(event, dict):
                system = event.get("log_system")
                if system is None:
                    level = getattr(event.get("log_level"), "name", "-")
                    system = f"{event.get('log_namespace', '-')}#{level}"
                event["worker"] = self.worker_id
                event["log_system"] = f"worker {self.worker_id} {system}"
                self._observer(event)
                return
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text.strip():
            self._log.warn(
                "{line}",
                line=text,
                worker=self.worker_id,
                log_system=f"worker {self.worker_id} stderr",
            )
