"""
The collector setup the daemon applies once it runs.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.daemon.gctune import FOLLOW_INTERVAL, THRESHOLDS, YOUNG_PER_REQUEST, GCTuning


class _Node:
    """
    An object that can be part of a reference cycle.
    """

    other: _Node | None = None


def recorded_collections(case: SynchronousTestCase) -> list[int]:
    """
    The generations of the collections that run from now until C{case} ends.
    """
    collections: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(record)
    case.addCleanup(gc.callbacks.remove, record)
    return collections


class GCTuningTests(SynchronousTestCase):
    """
    Freeze and thresholds, what they do to collections, and undoing both.
    """

    def _tune(self, thresholds: tuple[int, int, int] = THRESHOLDS) -> list[int]:
        """
        Apply the tuning until the test ends; the generations of the
        collections that run from then on.
        """
        tuning = GCTuning(thresholds)
        self.addCleanup(tuning.undo)
        tuning.apply()
        return recorded_collections(self)

    def test_apply_and_undo(self) -> None:
        """
        apply freezes what exists and sets the thresholds; undo restores both.
        """
        before = gc.get_threshold()
        self.assertEqual(gc.get_freeze_count(), 0)
        tuning = GCTuning((12_345, 7, 3))
        self.addCleanup(tuning.undo)
        tuning.apply()
        self.assertEqual(gc.get_threshold(), (12_345, 7, 3))
        self.assertGreater(gc.get_freeze_count(), 1000)
        tuning.undo()
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_apply_twice(self) -> None:
        """
        Applying again keeps the thresholds first found, for undo.
        """
        before = gc.get_threshold()
        tuning = GCTuning((12_345, 7, 3))
        self.addCleanup(tuning.undo)
        tuning.apply()
        tuning.apply()
        tuning.undo()
        self.assertEqual(gc.get_threshold(), before)

    def test_many_live_objects_no_collection(self) -> None:
        """
        With the default thresholds, 50,000 more live objects (what about
        500 requests under way hold) set off no collection.
        """
        collections = self._tune()
        live: list[list[int]] = [[] for _ in range(50_000)]
        self.assertEqual(collections, [])
        del live

    def test_cycles_collected(self) -> None:
        """
        Cycles made after the tuning are still collected once that many
        objects pile up: the freeze covers only what existed before.
        """
        collections = self._tune((1_000, 20, 100))
        first = _Node()
        first.other = _Node()
        first.other.other = first
        gone = weakref.ref(first)
        del first
        for _ in range(2_000):
            node = _Node()
            node.other = _Node()
            node.other.other = node
        del node
        self.assertIn(0, collections)
        self.assertIsNone(gone())


class FollowTests(SynchronousTestCase):
    """
    The young threshold follows the requests being served, never below the base.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.load = 0
        self.tuning = GCTuning((100_000, 20, 100))
        self.addCleanup(self.tuning.undo)
        self.tuning.start(lambda: self.load, self.clock)

    def test_base_when_idle(self) -> None:
        """
        With nothing served, the thresholds are the base ones.
        """
        self.assertEqual(gc.get_threshold(), (100_000, 20, 100))

    def test_rises_and_falls_with_the_load(self) -> None:
        """
        10,000 requests served raise the young threshold to
        YOUNG_PER_REQUEST times that within one interval; when they are
        done it is the base one again.  The older generations' stay.
        """
        self.load = 10_000
        self.clock.advance(FOLLOW_INTERVAL)
        self.assertEqual(gc.get_threshold(), (10_000 * YOUNG_PER_REQUEST, 20, 100))
        self.load = 3
        self.clock.advance(FOLLOW_INTERVAL)
        self.assertEqual(gc.get_threshold(), (100_000, 20, 100))

    def test_never_below_the_base(self) -> None:
        """
        A light load (under base / YOUNG_PER_REQUEST requests) keeps the base.
        """
        self.load = 100_000 // YOUNG_PER_REQUEST - 1
        self.clock.advance(FOLLOW_INTERVAL)
        self.assertEqual(gc.get_threshold()[0], 100_000)

    def test_live_objects_of_the_load_set_off_no_collection(self) -> None:
        """
        With 5,000 requests served, 300,000 new live objects set off no
        collection; at the base threshold they would.
        """
        collections = recorded_collections(self)
        self.load = 5_000
        self.clock.advance(FOLLOW_INTERVAL)
        live: list[list[int]] = [[] for _ in range(300_000)]
        self.assertEqual(collections, [])
        del live

    def test_undo_stops_following(self) -> None:
        """
        After undo the load no longer moves the thresholds.
        """
        before = self.tuning._previous
        self.tuning.undo()
        self.assertEqual(gc.get_threshold(), before)
        self.load = 10_000
        self.clock.advance(FOLLOW_INTERVAL)
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(self.clock.getDelayedCalls(), [])
