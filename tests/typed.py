"""
Test doubles typed as the collaborators they stand in for.

C{MemoryReactorClock}, C{Clock} and C{StubTreq} provide what the gateway
calls, but do not declare the combined interfaces: these casts say so once.
"""

from __future__ import annotations

from typing import cast

from twisted_lambdagw._types import HTTPClient, IGatewayReactor


def as_reactor(reactor: object) -> IGatewayReactor:
    """
    C{reactor} (a memory reactor or a clock) as the gateway's reactor type.
    """
    return cast(IGatewayReactor, reactor)


def as_client(client: object) -> HTTPClient:
    """
    C{client} (treq's C{HTTPClient} or C{StubTreq}) as the invoker's client type.
    """
    return cast(HTTPClient, client)
