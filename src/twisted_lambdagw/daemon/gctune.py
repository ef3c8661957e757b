"""
Python's garbage collector, set up for a long-running gateway process.

The cyclic collector only matters for objects in reference cycles; the
gateway frees everything a request made by reference counting alone
(measured: no cyclic garbage over 4,294 requests at 50 connections, nor
over 15 s at 10,000).  What the collector does cost is visiting live
objects:

- Its full collections visit every object the process holds.  Most of
  those are made at startup (Twisted, botocore's data files, the config)
  and live until the process ends.  So once the daemon runs, L{GCTuning}
  collects once and freezes what is left (``gc.freeze``: the collector
  never visits those objects again).

- Its young collections run when the count of tracked objects made less
  those freed since the last one passes the young threshold, and visit
  every object made since then that is still alive (about 0.8 µs each on
  a heap this size, most of it cache misses).  With 10,000 slow
  invocations under way the process holds about a million tracked
  objects, a hundred or so per request, each living as long as its
  request: seconds.  With a threshold of 100,000, the climb to those 10,000
  requests set off a young collection every 100,000 objects, and each
  visited everything made since the last one, since all of it was still
  in use: 17 to 21 young collections and 1.2 to 2.0 s of CPU in the 15 s
  of the bench's 10k row (14% of the gateway's CPU), freeing nothing.

A young threshold of 1,000,000 (about what 10,000 requests hold) made
that climb set off one young collection (0.7 to 1.0 s of CPU), and the
10k row's CPU per request fell from 1.6-1.9 ms to 1.2-1.8 ms; but cyclic
garbage then waits until a million objects of it pile up, and some is made
under load: client disconnects during a call (Twisted's cancellation keeps
each Failure's frames in a cycle, about 250 objects per cancelled call),
and probably failed backend connects on a loaded machine.  The row's peak
RSS rose from 284 MB to 295 MB and, on a busy machine, 419 MB (the target
is 300), so the threshold stays at 100,000: a pile
of garbage stays under about 20 MB, and the young collections' cost at
10,000 requests is the price.  The older generations are collected after
20 and then 100 collections of the one below.

Measured again once the 10k row held less (calls beyond 3,000 wait for a
connection, and a call no longer keeps its event's parts or its signed
headers as text): 500,000 gave 0.83-0.85 ms of CPU per request against
0.87 at 100,000, and the same peak RSS (218-220 MB against 216), in two
runs each; a gain within this machine's noise, so 100,000 stays.

Whole-row CPU hid what the collector's own callbacks show: timed by
``gc.callbacks`` in the 10k row (15 s, about 18,000 requests), the young
collections above startup's took 1.1-1.2 s, and the middle generation's,
each visiting everything the young ones had promoted, 0.01-0.9 s more: up
to 14% of the gateway's CPU, for 2,000 objects of garbage found.  The
process then held 830,000-870,000 tracked objects, about 300,000 of them
with no request under way: some 56 per request, plus its connections.  So
the young threshold follows the load (L{GCTuning.follow}): it is
L{YOUNG_PER_REQUEST} times the requests being served, and never less than
100,000.  Garbage may then pile up to about what the requests under way
hold before a collection finds it, and no further.  At 10,000 requests
all the collector's time in the process, startup's included, fell to
0.2-0.35 s (from 1.5-2.5 s), with the same 215-218 MB peak RSS, and the
gateway's CPU per request by about a tenth; with the load gone the
threshold is 100,000 again within L{FOLLOW_INTERVAL}.

It is applied by ``twistd lambdagw`` only: an application embedding the
gateway decides about its own process.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

THRESHOLDS = (100_000, 20, 100)
"""Net tracked objects before a young collection; young collections before the next generation's."""

YOUNG_PER_REQUEST = 100
"""Young threshold per request being served, once above the base one."""

FOLLOW_INTERVAL = 0.25
"""Seconds between looks at the load: 10,000 requests take a core seconds to read."""


class GCTuning:
    """
    Freezes what the process holds now and sets the collector's thresholds,
    the young one following the load once L{follow} is called; L{undo} puts
    back what it found.
    """

    def __init__(
        self,
        thresholds: tuple[int, int, int] = THRESHOLDS,
        per_request: int = YOUNG_PER_REQUEST,
    ) -> None:
        self.thresholds = thresholds
        self.per_request = per_request
        self._previous: tuple[int, int, int] | None = None
        self._following: LoopingCall | None = None

    def apply(self) -> None:
        if self._previous is None:
            self._previous = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self.thresholds)

    def start(self, load: Callable[[], int], clock: IReactorTime) -> None:
        """
        L{apply}, then L{follow} C{load}.
        """
        self.apply()
        self.follow(load, clock)

    def follow(
        self, load: Callable[[], int], clock: IReactorTime, interval: float = FOLLOW_INTERVAL
    ) -> None:
        """
        Every C{interval} seconds, set the young threshold to
        L{per_request} times C{load()} (the requests being served), or the
        base one if that is more.  Call after L{apply}.
        """
        base, middle, old = self.thresholds

        def adjust() -> None:
            young = max(base, self.per_request * load())
            if gc.get_threshold()[0] != young:
                gc.set_threshold(young, middle, old)

        loop = LoopingCall(adjust)
        loop.clock = clock
        loop.start(interval, now=True)
        self._following = loop

    def undo(self) -> None:
        if self._following is not None:
            if self._following.running:
                self._following.stop()
            self._following = None
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            gc.unfreeze()
            self._previous = None
