"""
Stand-in for the per-route chain's interface (CHAIN-SPEC), until it lands on main.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from twisted.web.server import Request

from ..core.exchange import Exchange
from ..core.messages import Reply
from ..core.proxies import Origin

if TYPE_CHECKING:
    from ..core.config import RouteConfig

Stage = Literal["cors", "limit-before-auth", "authorize", "limit-after-auth", "admit"]


@dataclass(slots=True)
class Principal:
    """Who the request was authorized as."""

    user: str
    source: Literal["basic", "jwt", "lambda"]
    claims: Mapping[str, object] | None = None
    scopes: tuple[str, ...] | None = None
    context: Mapping[str, object] | None = None


@dataclass(slots=True)
class Passage:
    """One request on its way through its route's chain."""

    request: Request
    request_id: str
    route: RouteConfig
    origin: Origin
    raw_path: str
    path: str
    exchange: Exchange
    principal: Principal | None = None
    answer_headers: list[tuple[str, str]] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    cleanups: list[Callable[[], None]] = field(default_factory=list)


class Step(Protocol):
    stage: ClassVar[Stage]

    async def __call__(self, passage: Passage) -> Reply | None: ...

    def describe(self) -> str: ...
