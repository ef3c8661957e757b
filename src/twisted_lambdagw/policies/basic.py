"""
C{auth = basic}: the login of the C{[auth]} users file, as a step.

The check itself (the users file, bcrypt in threads, the cache) is
L{twisted_lambdagw.policies.auth}; this step asks it, and records who the request is
from for the function (C{X-Authenticated-User}) and the access log.  It
runs before the name check, so a client without a login learns nothing
about which function names exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from .chain import Passage, Principal, Stage

if TYPE_CHECKING:
    from twisted.web.server import Request

    from twisted_lambdagw.core.messages import Reply


class Authenticator(Protocol):
    """
    Decides who a request is from, for routes that require a login.
    """

    async def authenticate(self, request: Request) -> str:
        """
        The authenticated user name; raises L{twisted_lambdagw.errors.Unauthorized}.
        """
        ...


class BasicAuth:
    """
    Refuses a request without a valid login (401 with the Basic challenge).
    """

    stage: ClassVar[Stage] = "authorize"

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def __call__(self, passage: Passage) -> Reply | None:
        user = await self._authenticator.authenticate(passage.request)
        passage.principal = Principal(user, "basic")
        passage.exchange.user = user
        return None

    def describe(self) -> str:
        return "auth basic ([auth] users_file)"
