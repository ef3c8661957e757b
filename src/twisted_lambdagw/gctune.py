"""
Python's garbage collector, set up for a long-running gateway process.

The cyclic collector's full collections visit every object the process
holds.  Most of those are made at startup (Twisted, botocore's data files,
the config) and live until the process ends; and with thousands of slow
invocations under way, each request's objects outlive the young
generations and pile into the old one, whose collections then ran for
hundreds of milliseconds at a time: at 10,000 concurrent requests, the
collector took more CPU than serving them.

So once the daemon runs, L{GCTuning} collects once and freezes what is left
(``gc.freeze``: the collector never visits those objects again), and raises
the thresholds.  The young generation's count is the tracked objects made
less those freed, so with a threshold of 100,000 a young collection runs
when that many more objects are alive (or in unreachable cycles) than at
the last one: rarely while the number of requests under way holds steady,
and by then most of a request's objects have been freed without ever being
visited.  The older generations are collected after many more young
collections.  Unreachable cycles still go, in larger, rarer batches.

It is applied by ``twistd lambdagw`` only: an application embedding the
gateway decides about its own process.
"""

from __future__ import annotations

import gc

THRESHOLDS = (100_000, 20, 100)
"""Allocations before a young collection; young collections before the next generation's."""


class GCTuning:
    """
    Freezes what the process holds now and sets the collector's thresholds;
    L{undo} puts back what it found.
    """

    def __init__(self, thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
        self.thresholds = thresholds
        self._previous: tuple[int, int, int] | None = None

    def apply(self) -> None:
        if self._previous is None:
            self._previous = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self.thresholds)

    def undo(self) -> None:
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            gc.unfreeze()
            self._previous = None
