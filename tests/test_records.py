"""
Tests for L{twisted_lambdagw.core.records}: per-request records are slotted, equal
and hashed by value, and read-only to mypy.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.messages import IncomingRequest, Reply
from twisted_lambdagw.core.proxies import Origin
from twisted_lambdagw.core.routing import Target
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult


def incoming(**changes: Any) -> IncomingRequest:
    fields: dict[str, Any] = dict(
        request_id="r",
        method="GET",
        raw_path="/a",
        path="/a",
        function_raw_path="/",
        function_path="/",
        raw_query="",
        headers=(("Host", "gw"),),
        body=b"",
        protocol="HTTP/1.1",
        scheme="http",
        host="gw",
        remote_addr="192.0.2.1",
        server_port=80,
        time=1.0,
        route_prefix="/a",
        function_name="a",
    )
    fields.update(changes)
    return IncomingRequest(**fields)


class RecordTests(SynchronousTestCase):
    def test_slotted(self) -> None:
        """
        No instance dictionary: records are many at high concurrency.
        """
        for made in (
            incoming(),
            Reply(200, (), b""),
            InvokeCall("f", b"{}"),
            InvokeResult(b"{}"),
            Origin("192.0.2.1", "http", 80),
            Target("f", "f", None, "/"),
        ):
            self.assertFalse(hasattr(made, "__dict__"), type(made).__name__)

    def test_equal_and_hashed_by_value(self) -> None:
        """
        Equal records hash alike, as frozen dataclasses do; fields outside
        the comparison (a result's parsed document) count for neither.
        """
        self.assertEqual(incoming(), incoming())
        self.assertEqual(hash(incoming()), hash(incoming()))
        self.assertNotEqual(incoming(), incoming(method="POST"))
        self.assertEqual(
            {InvokeCall("f", b"1"), InvokeCall("f", b"1"), InvokeCall("g", b"1")},
            {InvokeCall("f", b"1"), InvokeCall("g", b"1")},
        )
        self.assertEqual(InvokeResult(b"[]", document=[]), InvokeResult(b"[]"))
        self.assertEqual(hash(InvokeResult(b"[]", document=[])), hash(InvokeResult(b"[]")))
        self.assertEqual(len({Origin("a", "http", 1), Origin("a", "http", 1)}), 1)

    def test_read_only_to_mypy(self) -> None:
        """
        mypy refuses assignment to a record's fields.  CI's mypy run is
        strict, so an ignore that is not needed is itself an error: were a
        record not read-only to mypy, these lines would fail it.
        """
        call = InvokeCall("f", b"{}")
        call.function = "g"  # type: ignore[misc]
        reply = Reply(200, (), b"")
        reply.status = 500  # type: ignore[misc]
        request = incoming()
        request.method = "POST"  # type: ignore[misc]
        result = InvokeResult(b"{}")
        result.status = 502  # type: ignore[misc]
        origin = Origin("192.0.2.1", "http", 80)
        origin.port = 81  # type: ignore[misc]
        target = Target("f", "f", None, "/")
        target.qualifier = "live"  # type: ignore[misc]
        # At run time they are plain slotted dataclasses.
        self.assertEqual((call.function, reply.status, origin.port), ("g", 500, 81))
