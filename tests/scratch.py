"""
Scratch files for tests, in directories removed afterwards (trial's mktemp
would write into the current directory when pytest runs the tests).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase


def temp_dir(case: SynchronousTestCase) -> str:
    """
    A fresh directory, removed when the test ends.
    """
    directory = tempfile.mkdtemp(prefix="lambdagw-test-")
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


def temp_path(case: SynchronousTestCase, name: str = "f") -> str:
    """
    A fresh file name (the file does not exist yet), removed when the test ends.
    """
    return os.path.join(temp_dir(case), name)
