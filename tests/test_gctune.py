"""
The collector setup the daemon applies once it runs.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.gctune import GCTuning


class GCTuningTests(SynchronousTestCase):
    """
    Freeze and thresholds, and undoing both.
    """

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
