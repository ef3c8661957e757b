"""
The name and body checks every route runs last before its in-flight admission.
"""

from __future__ import annotations

from typing import ClassVar

from twisted_lambdagw.core.errors import RequestTooLarge
from twisted_lambdagw.core.messages import Reply
from twisted_lambdagw.core.routing import resolve

from .chain import Passage, Stage, SyncStep


class NameCheck(SyncStep):
    """
    Resolves the function the request invokes, and refuses a body over the limit.

    The name must pass the route's strict checks (L{resolve}: 404
    otherwise); the target is left on C{passage.target} for the invoke.  A
    body the request stopped reading past C{max_body_size} is a 413, told
    once the name is known (the log names the function it was for).
    """

    stage: ClassVar[Stage] = "admit"

    def check(self, passage: Passage) -> Reply | None:
        target = passage.target = resolve(passage.route, passage.raw_path)
        exchange = passage.exchange
        exchange.function = target.function
        exchange.qualifier = target.qualifier
        if getattr(passage.request, "body_too_large", False):
            raise RequestTooLarge(detail=f"body over the limit for {target.function}")
        return None

    def describe(self) -> str:
        return "function name and body size"
