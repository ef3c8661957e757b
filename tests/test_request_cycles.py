"""
A served request is freed by its reference count, not by the garbage
collector: under load the daemon raises the collector's thresholds (see
L{twisted_lambdagw.daemon.gctune}), so a cycle per request would pile up
thousands of requests between collections and make each collection long.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.policies.chain import Passage
from twisted_lambdagw.server.request import GatewayRequest

from .site_fixtures import SiteUnderTest


class RequestCycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        gc.collect()
        enabled = gc.isenabled()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)

        def restore() -> None:
            gc.set_debug(0)
            gc.garbage.clear()
            if enabled:
                gc.enable()

        self.addCleanup(restore)

    def cyclic(self) -> list[object]:
        """
        The requests and passages that only the collector could free.
        """
        gc.garbage.clear()
        gc.collect()
        return [o for o in gc.garbage if isinstance(o, (GatewayRequest, Passage))]

    def test_served_requests_leave_no_cycle(self) -> None:
        """
        Three requests answered on a kept-alive connection: none of them,
        nor its passage through the route's chain, is left in a cycle.
        """
        site = SiteUnderTest()
        self.addCleanup(site.stop)
        connection = site.connect()
        for _ in range(3):
            connection.send(b"GET /lambda/fn/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 200 "), 3)
        self.assertEqual(self.cyclic(), [])

    def test_refused_requests_leave_no_cycle(self) -> None:
        """
        Requests the chain refuses (a bad name: 404) leave no cycle either.
        """
        site = SiteUnderTest()
        self.addCleanup(site.stop)
        connection = site.connect()
        for _ in range(3):
            connection.send(b"GET /lambda/bad:name/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(connection.transport.value().count(b"HTTP/1.1 404 "), 3)
        self.assertEqual(self.cyclic(), [])
