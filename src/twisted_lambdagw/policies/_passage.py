"""
The parts of a request's passage through its chain that these steps read.

(Stand-in until the chain's own C{Passage} lands; the real one has all of these.)
"""

from __future__ import annotations

from typing import Protocol

from twisted.web.server import Request

from ..core.config import RouteConfig
from ..core.exchange import Exchange
from ..core.proxies import Origin


class PrincipalView(Protocol):
    @property
    def user(self) -> str: ...


class PassageView(Protocol):
    request: Request
    route: RouteConfig
    origin: Origin
    exchange: Exchange

    @property
    def principal(self) -> PrincipalView | None: ...

    answer_headers: list[tuple[str, str]]
    replaced: set[str]
