"""
Access to the real reactor for the tests that need real sockets or processes.
"""

from __future__ import annotations

from typing import Any


def real_reactor() -> Any:
    """
    The global reactor, imported only when a loopback test runs.
    """
    from twisted.internet import reactor

    return reactor
