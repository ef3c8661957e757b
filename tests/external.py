"""
Tests that need a program or package from outside Python: Node.js and npm
packages, redis-server, Chromium.

C{.ci/run} installs every one of them, so under CI (C{CI=true}) a missing one
is a failure; on a developer's machine, which may lack them, the test skips
and says what to install.
"""

from __future__ import annotations

import os
from typing import NoReturn

from twisted.trial.unittest import SkipTest


def missing(problem: str) -> NoReturn:
    """
    Skip the test for want of C{problem}, or fail it under CI.
    """
    if os.environ.get("CI") == "true":
        raise AssertionError(f"{problem} (.ci/run installs it)")
    raise SkipTest(problem)
