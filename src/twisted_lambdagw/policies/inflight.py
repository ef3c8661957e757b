"""
In-flight admission: at most C{max_in_flight} invocations under way per process.
"""

from __future__ import annotations

from typing import ClassVar

from twisted_lambdagw.core.errors import Throttled
from twisted_lambdagw.core.messages import Reply

from .chain import Passage, Stage, SyncStep


class InFlight:
    """
    The invocations under way in this process, and the ceiling on them.

    One per gateway, shared by every route's L{Admission} step; the resource
    shows C{count} as its C{in_flight} and the metrics as
    C{lambdagw_in_flight}.

    @ivar limit: the most admitted at once; None for no limit.
    """

    __slots__ = ("count", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self.count = 0
        self.limit = limit

    def release(self) -> None:
        """
        One admitted invocation is over.
        """
        self.count -= 1


class Admission(SyncStep):
    """
    Refuses a request when C{max_in_flight} invocations are under way (503
    with C{Retry-After}); otherwise takes a slot until the request is over.

    A step that takes the slot and registers its release as a cleanup, not
    a count kept around the invoke in the resource: the passage's cleanups
    run when the request is over, and from the end of an invocation to
    there nothing waits (the reply is parsed and written in the same turn
    of the reactor; a stream's request is over when the relay has ended
    it).  So the slot is held exactly as long as the invocation, streams
    included, and the resource knows nothing of admission.  It is the last
    step of the chain: no step after it can answer in its place, and a
    refusal by an earlier step never takes a slot.
    """

    stage: ClassVar[Stage] = "admit"

    __slots__ = ("_in_flight", "_release")

    def __init__(self, in_flight: InFlight) -> None:
        self._in_flight = in_flight
        self._release = in_flight.release

    def check(self, passage: Passage) -> Reply | None:
        in_flight = self._in_flight
        limit = in_flight.limit
        if limit is not None and in_flight.count >= limit:
            raise Throttled("gateway at capacity", detail=f"{in_flight.count} in flight")
        in_flight.count += 1
        passage.cleanups.append(self._release)
        return None

    def describe(self) -> str:
        limit = self._in_flight.limit
        return f"admission (max_in_flight {'unlimited' if limit is None else limit})"
