"""
What the gateway reads of other packages' private state, in one place.

Each name here is an assumption about a package's internals; the tests
(C{tests/test_compat.py}) assert each one, so an upgrade that breaks one
fails there, by name, rather than somewhere in a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# --- The HTTP/1.1 channel (twisted_lambdagw.server.channel) -------------------------
#
# GatewayChannel subclasses twisted.web's HTTPChannel, replacing its parser
# (LineReceiver) with llhttp and keeping the rest: the Request it makes, the
# queue of requests (``requests``), the producer plumbing and the timeouts.
# It reads and sets these attributes of HTTPChannel, as HTTPChannel's own
# methods do:
#
#  - ``_networkProducer``: the transport as a push producer, paused while
#    pipelined requests wait and resumed when they are handed over;
#  - ``_handlingRequest``: true from a request's end of body to its
#    requestDone (HTTPChannel's pauseProducing reads it);
#  - ``_waitingForTransport``: true while the transport asked to pause;
#  - ``_savedTimeOut``: the idle timeout put aside while a request is served;
#  - ``_requestProducer``: the producer a Request registered;
#  - ``_send100Continue``: writes the interim ``100 Continue``.
#
# The generic protocol that switches a connection to HTTP/2 after ALPN is
# twisted.web's private ``_GenericHTTPChannelProtocol``.
from twisted.web.http import _GenericHTTPChannelProtocol as GenericHTTPChannelProtocol

HTTP_CHANNEL_STATE = (
    "_networkProducer",
    "_handlingRequest",
    "_waitingForTransport",
    "_savedTimeOut",
    "_requestProducer",
    "_send100Continue",
)
"""HTTPChannel's private attributes GatewayChannel uses (asserted by the tests)."""


# --- The limits store's Redis pool (twisted_lambdagw.policies.limits.redis) ---------


def redis_pool_retry_delays(handler: Any, *, initial: float, maximum: float) -> None:
    """
    Make a txredisapi pool reconnect within C{maximum} seconds of a lost server.

    txredisapi waits up to 10 s between attempts (C{RedisFactory.maxDelay}),
    and offers no argument for it; a limits store must be counted on again
    as soon as it is back.  The pool's factory is C{handler._factory}; its
    C{retryDelay} reads C{initialDelay} and C{maxDelay} at every attempt.
    """
    factory = handler._factory
    assert hasattr(factory, "initialDelay") and hasattr(factory, "maxDelay")
    factory.initialDelay = initial
    factory.maxDelay = maximum


def redis_pool_connections(handler: Any) -> Sequence[Any]:
    """
    The live list of a txredisapi pool's connections (its protocols).

    The store sends each check straight to a connected one, skipping the
    handler's per-call wait for a free connection (an inlineCallbacks
    generator and two Deferreds per call).  C{handler._factory.pool} is
    the list the factory appends a connection to once it is ready and
    removes it from once it is lost; each has C{connected} (0 once lost)
    and the public C{execute_command}.
    """
    pool = handler._factory.pool
    assert isinstance(pool, list)
    return pool


__all__ = [
    "HTTP_CHANNEL_STATE",
    "GenericHTTPChannelProtocol",
    "redis_pool_connections",
    "redis_pool_retry_delays",
]
