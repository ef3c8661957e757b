"""
The collector setup the daemon applies once it runs.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.gctune import THRESHOLDS, GCTuning


class _Node:
    """
    An object that can be part of a reference cycle.
    """

    other: _Node | None = None


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
        collections: list[int] = []

        def record(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                collections.append(info["generation"])

        gc.callbacks.append(record)
        self.addCleanup(gc.callbacks.remove, record)
        return collections

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
