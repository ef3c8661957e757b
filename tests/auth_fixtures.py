"""
Helpers for basic auth tests: users files with cheap hashes, thread runners
that make bcrypt's thread hops visible, and Authorization values.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TypeVar

import bcrypt
from twisted.internet.defer import Deferred, succeed

# Cost 4, bcrypt's lowest, keeps the tests fast; the checks are the same.
ALICE_HASH = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()
BOB_HASH = bcrypt.hashpw(b"builder", bcrypt.gensalt(4)).decode()

T = TypeVar("T")


class InlineThreads:
    """
    A thread runner that runs each function at once and counts the calls.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, f: Callable[[], T], /) -> Deferred[T]:
        self.calls += 1
        return succeed(f())


class HeldThreads:
    """
    A thread runner that holds each function until the test runs it.
    """

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, f: Callable[[], T], /) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self.pending.append(lambda: d.callback(f()))
        return d

    def run_all(self) -> None:
        while self.pending:
            self.pending.pop(0)()


def basic(user: str, password: str) -> str:
    """
    An ``Authorization`` value for Basic credentials.
    """
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
