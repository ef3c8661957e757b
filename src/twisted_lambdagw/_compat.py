"""
Every reading or setting of another package's private state, in one place.

Each assumption made here is asserted by a test (C{tests/test_compat.py}),
so an upgrade that breaks one fails loudly there.
"""

from __future__ import annotations

from typing import Any


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
