"""
The parts of a request's passage through its chain that these steps read.

(Stand-in until the chain's own C{Passage} lands; the real one has all of these.)
"""

from __future__ import annotations

from typing import Protocol

from twisted.web.server import Request

from ..core.exchange import Exchange


class OriginView(Protocol):
    @property
    def remote(self) -> str: ...


class PrincipalView(Protocol):
    @property
    def user(self) -> str: ...


class PassageView(Protocol):
    request: Request

    @property
    def origin(self) -> OriginView: ...

    exchange: Exchange

    @property
    def principal(self) -> PrincipalView | None: ...

    answer_headers: list[tuple[str, str]]
    replaced: set[str]
