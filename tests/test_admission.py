"""
``[aws] max_connections`` bounds the calls under way to one endpoint: the
limit itself, the invoker waiting its turn within the route's timeout, and
a streamed call holding its slot until its stream ends.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import Response, TransportProxyProducer
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from twisted_lambdagw.core.errors import GatewayError, InvokeFailed
from twisted_lambdagw.core.eventstream import InvokeComplete
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.invokers.aws.admission import ConnectionLimit
from twisted_lambdagw.invokers.aws.invoker import AWSInvoker, CredentialSource
from twisted_lambdagw.invokers.aws.stream import EventStreamResponse
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import FakeContext, FakeLambda

from .eventstream_encoder import invoke_complete
from .gateway_fixtures import BASE_CONFIG, FakeAWSGateway, config_from

ENDPOINT = "https://lambda.us-west-2.amazonaws.com"


class ConnectionLimitTests(SynchronousTestCase):
    """
    Slots up to the limit at once; the others wait and get them in order, a
    slot given back passing on at the reactor's next turn.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def limited(self, limit: int) -> ConnectionLimit:
        return ConnectionLimit(limit, self.clock)

    def test_immediate_under_the_limit(self) -> None:
        """
        Calls under the limit get their slot at once.
        """
        limit = self.limited(2)
        self.successResultOf(limit.acquire())
        self.successResultOf(limit.acquire())
        self.assertEqual((limit.active, limit.waiting), (2, 0))

    def test_try_acquire(self) -> None:
        """
        try_acquire takes a free slot at once, never one a waiting call is
        owed, and its slot is given back like any other.
        """
        limit = self.limited(1)
        self.assertTrue(limit.try_acquire())
        self.assertFalse(limit.try_acquire())
        waiting = limit.acquire()
        limit.release_later()
        # A slot given back, not yet passed on: it is the waiting call's.
        self.assertFalse(limit.try_acquire())
        self.clock.advance(0)
        self.successResultOf(waiting)
        limit.release()
        self.assertEqual((limit.active, limit.waiting), (0, 0))
        self.assertTrue(limit.try_acquire())
        later = limit.acquire()
        limit.release()
        self.successResultOf(later)
        self.assertEqual((limit.active, limit.waiting), (1, 0))

    def test_fifo(self) -> None:
        """
        Beyond the limit calls wait; each release wakes the oldest one at once.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        order: list[int] = []

        def turn(_: None, n: int) -> None:
            order.append(n)

        for n in range(3):
            limit.acquire().addCallback(turn, n)
        self.assertEqual((limit.active, limit.waiting), (1, 3))
        limit.release()
        self.assertEqual(order, [0])
        limit.release()
        limit.release()
        self.assertEqual(order, [0, 1, 2])
        self.assertEqual((limit.active, limit.waiting), (1, 0))
        limit.release()
        self.assertEqual((limit.active, limit.waiting), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_release_later_passes_on_next_turn(self) -> None:
        """
        A slot given back by a cancelled call reaches the next waiter on the
        reactor's next turn, not within release_later.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        waiting = limit.acquire()
        limit.release_later()
        self.assertNoResult(waiting)
        self.assertEqual((limit.active, limit.waiting), (1, 1))
        self.clock.advance(0)
        self.successResultOf(waiting)
        self.assertEqual((limit.active, limit.waiting), (1, 0))

    def test_release_later_with_nobody_waiting(self) -> None:
        """
        With no call waiting, a slot given back later is free at once.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        limit.release_later()
        self.assertEqual((limit.active, limit.waiting), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waiter_gone_in_the_same_turn_is_passed_over(self) -> None:
        """
        A waiter cancelled after a cancelled call's slot came free but before
        the next turn (its client left in the same poll) never gets it: the
        call behind it does.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        gone, next_one = limit.acquire(), limit.acquire()
        limit.release_later()
        gone.cancel()
        self.failureResultOf(gone, CancelledError)
        self.clock.advance(0)
        self.successResultOf(next_one)
        self.assertEqual((limit.active, limit.waiting), (1, 0))

    def test_freed_slot_with_nobody_left_is_returned(self) -> None:
        """
        When every waiter leaves before the next turn, the slots given back
        later are simply free again.
        """
        limit = self.limited(2)
        self.successResultOf(limit.acquire())
        self.successResultOf(limit.acquire())
        waiters = [limit.acquire() for _ in range(3)]
        limit.release_later()
        limit.release_later()
        for d in waiters:
            d.cancel()
            self.failureResultOf(d, CancelledError)
        self.clock.advance(0)
        self.assertEqual((limit.active, limit.waiting), (0, 0))
        self.successResultOf(limit.acquire())

    def test_slot_given_back_at_once_passes_on_in_the_same_turn(self) -> None:
        """
        A call woken on the next turn that gives its slot straight back (its
        send failed at once) hands it to the next waiter in that same turn.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        first, second = limit.acquire(), limit.acquire()
        first.addCallback(lambda _: limit.release())
        limit.release_later()
        self.clock.advance(0)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual((limit.active, limit.waiting), (1, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_release_meanwhile_goes_first(self) -> None:
        """
        A call that ends while a cancelled call's slot waits for the next
        turn hands its own slot over at once; order is kept.
        """
        limit = self.limited(2)
        self.successResultOf(limit.acquire())
        self.successResultOf(limit.acquire())
        first, second = limit.acquire(), limit.acquire()
        limit.release_later()
        limit.release()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.clock.advance(0)
        self.successResultOf(second)
        self.assertEqual((limit.active, limit.waiting), (2, 0))

    def test_new_call_queues_behind_waiters(self) -> None:
        """
        A call arriving while others wait queues behind them, even with a slot free.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        first = limit.acquire()
        limit.release_later()  # a slot free, passed on at the next turn
        later = limit.acquire()
        self.assertNoResult(later)
        self.assertNoResult(first)
        self.clock.advance(0)
        self.successResultOf(first)
        self.assertNoResult(later)

    def test_cancelled_waiter_is_skipped(self) -> None:
        """
        A cancelled waiter fails with CancelledError and never takes a slot.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        gone, next_one = limit.acquire(), limit.acquire()
        gone.cancel()
        self.failureResultOf(gone, CancelledError)
        self.assertEqual(limit.waiting, 1)
        limit.release()
        self.successResultOf(next_one)
        self.assertEqual((limit.active, limit.waiting), (1, 0))

    def test_many_cancelled_waiters_are_dropped(self) -> None:
        """
        Past compact_above, cancelled waiters leave the queue itself.
        """
        limit = self.limited(1)
        limit.compact_above = 2
        self.successResultOf(limit.acquire())
        waiters = [limit.acquire() for _ in range(5)]
        for d in waiters[:4]:
            d.cancel()
            self.failureResultOf(d, CancelledError)
        self.assertLess(len(limit._queue), 5)
        limit.release()
        self.successResultOf(waiters[4])

    def test_release_without_slot(self) -> None:
        """
        Releasing more than was taken is a bug, said at once.
        """
        self.assertRaises(RuntimeError, self.limited(1).release)

    def test_release_of_a_slot_already_given_back(self) -> None:
        """
        A slot given back and not yet passed on cannot be given back twice.
        """
        limit = self.limited(1)
        self.successResultOf(limit.acquire())
        limit.acquire()
        limit.release_later()
        self.assertRaises(RuntimeError, limit.release)
        self.assertRaises(RuntimeError, limit.release_later)

    def test_limit_at_least_one(self) -> None:
        """
        A limit of zero could never let a call through.
        """
        self.assertRaises(ValueError, ConnectionLimit, 0, self.clock)


class Held:
    """
    A FakeLambda handler that answers only when told to.
    """

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []

    def __call__(self, event: Any, context: FakeContext) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d


class Bounded:
    """
    An AWSInvoker with a limit in front of a FakeLambda whose answers wait.
    """

    def __init__(self, limit: int) -> None:
        self.held = Held()
        self.api = FakeLambda({"fn": self.held})
        self.stub = StubTreq(self.api)
        self.clock = Clock()
        self.limit = ConnectionLimit(limit, self.clock)
        self.invoker = AWSInvoker(
            self.stub,
            CredentialSource.from_keys("AKIDEXAMPLE", "secret"),
            "us-west-2",
            ENDPOINT,
            clock=self.clock,
            limit=self.limit,
        )

    def invoke(self) -> Deferred[InvokeResult]:
        call = InvokeCall(function="fn", payload=b"{}", method="POST")
        d = Deferred.fromCoroutine(self.invoker.invoke(call))
        self.stub.flush()
        return d

    def answer(self, n: int = 0) -> None:
        """
        Answer a held call; its slot passes on at once, no turn needed.
        """
        self.held.pending.pop(n).callback({"n": 1})
        self.stub.flush()

    def next_turn(self) -> None:
        """
        What the reactor's next turn does: pass freed slots on, send.
        """
        self.stub.flush()
        self.clock.advance(0)
        self.stub.flush()


class InvokerLimitTests(SynchronousTestCase):
    """
    The invoker sends no more calls at once than its limit; the rest wait in turn.
    """

    def test_waits_then_sends(self) -> None:
        """
        The third call is sent only once one of the first two has its whole answer.
        """
        b = Bounded(2)
        calls = [b.invoke() for _ in range(3)]
        self.assertEqual(len(b.api.calls), 2)
        self.assertEqual((b.limit.active, b.limit.waiting), (2, 1))
        b.answer()
        self.assertEqual(json.loads(self.successResultOf(calls[0]).payload), {"n": 1})
        self.assertEqual(len(b.api.calls), 3)
        b.answer()
        b.answer()
        for d in calls[1:]:
            self.successResultOf(d)
        self.assertEqual((b.limit.active, b.limit.waiting), (0, 0))

    def test_failure_gives_the_slot_back(self) -> None:
        """
        A call Lambda refuses (here an unknown function) frees its slot.
        """
        b = Bounded(1)
        refused = Deferred.fromCoroutine(
            b.invoker.invoke(InvokeCall(function="nope", payload=b"{}", method="POST"))
        )
        b.stub.flush()
        self.failureResultOf(refused, GatewayError)
        self.assertEqual(b.limit.active, 0)

    def test_cancel_while_waiting(self) -> None:
        """
        A waiting call cancelled (client gone, timeout) is never sent and takes no slot.
        """
        b = Bounded(1)
        first, waiting = b.invoke(), b.invoke()
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(b.limit.waiting, 0)
        b.answer()
        self.successResultOf(first)
        self.assertEqual(len(b.api.calls), 1)
        self.assertEqual(b.limit.active, 0)

    def test_cancel_while_sent(self) -> None:
        """
        A call cancelled after it went out gives its slot to the next one, on
        the reactor's next turn.
        """
        b = Bounded(1)
        sent, waiting = b.invoke(), b.invoke()
        sent.cancel()
        self.failureResultOf(sent, CancelledError)
        b.stub.flush()
        self.assertEqual(len(b.api.calls), 1)  # not before the next turn
        b.next_turn()
        self.assertEqual(len(b.api.calls), 2)
        b.answer(-1)
        self.successResultOf(waiting)
        self.assertEqual(b.limit.active, 0)

    def test_refused_stream_gives_the_slot_back(self) -> None:
        """
        A streamed call refused before streaming frees its slot at once.
        """
        b = Bounded(1)
        call = InvokeCall(function="fn", payload=b"{}", method="POST")
        opening = Deferred.fromCoroutine(b.invoker.invoke_stream(call))
        b.stub.flush()
        self.failureResultOf(opening, GatewayError)
        self.assertEqual(b.limit.active, 0)


class WaitInsideTimeoutTests(SynchronousTestCase):
    """
    Waiting for a slot counts in the route's timeout: 504 when it runs out.
    """

    def test_504_while_waiting(self) -> None:
        """
        A request that waits past its route's timeout is a 504; its turn never comes.
        """
        b = Bounded(1)
        config = config_from(
            """
            [aws]
            region = us-west-2
            [route:/fn/]
            backend = aws
            single = fn
            timeout = 2s
            """
        )
        route = config.routes[0]
        binding = Binding(route=route, invoker=b.invoker, format=get_format(route.format))
        front: Any = StubTreq(GatewayResource([binding], b.clock))
        busy = b.invoke()  # holds the one slot, with no timeout of its own
        answer = front.post("http://gw.test/fn/x", data=b"{}")
        front.flush()
        self.assertEqual((b.limit.active, b.limit.waiting), (1, 1))
        b.clock.advance(2.5)
        front.flush()
        response = self.successResultOf(answer)
        self.assertEqual(response.code, 504)
        body = json.loads(self.successResultOf(response.content()))
        self.assertEqual(body["error"], "function timed out")
        self.assertEqual((b.limit.active, b.limit.waiting), (1, 0))
        self.assertEqual(len(b.api.calls), 1)
        b.answer()
        self.successResultOf(busy)
        self.assertEqual(b.limit.active, 0)


class StreamSlotTests(SynchronousTestCase):
    """
    A streamed call keeps its slot until the stream ends, however it ends.
    """

    def stream(self) -> tuple[EventStreamResponse, Any, list[str]]:
        connection = StringTransport()
        response: Any = Response._construct(
            (b"HTTP", 1, 1), 200, b"OK", Headers(), TransportProxyProducer(connection), None
        )
        ends: list[str] = []
        return (
            EventStreamResponse(response, "fn", on_end=lambda: ends.append("end")),
            response,
            ends,
        )

    def test_completed(self) -> None:
        """
        A stream read to its InvokeComplete ends once.
        """
        stream, response, ends = self.stream()
        received = Receiver()
        stream.start(received)
        self.assertEqual(ends, [])
        response._bodyDataReceived(invoke_complete())
        response._bodyDataFinished(Failure(ResponseDone()))
        self.assertEqual(ends, ["end"])
        self.assertEqual(len(received.ends), 1)

    def test_stopped(self) -> None:
        """
        A stream the gateway stops (the client went away) ends at once, once.
        """
        stream, _response, ends = self.stream()
        stream.start(Receiver())
        stream.stopProducing()
        stream.stopProducing()
        self.assertEqual(ends, ["end"])

    def test_truncated(self) -> None:
        """
        A stream cut before its InvokeComplete ends as a failure, once.
        """
        stream, response, ends = self.stream()
        received = Receiver()
        stream.start(received)
        response._bodyDataFinished(Failure(ResponseDone()))
        self.assertEqual(ends, ["end"])
        self.assertIsInstance(received.ends[0], InvokeFailed)


class Receiver:
    """
    A stream receiver that records how the stream ended.
    """

    def __init__(self) -> None:
        self.ends: list[object] = []

    def stream_data(self, data: bytes) -> None:
        pass

    def stream_complete(self, complete: InvokeComplete) -> None:
        self.ends.append(complete)

    def stream_failed(self, error: GatewayError) -> None:
        self.ends.append(error)


class GatewayLimitTests(SynchronousTestCase):
    """
    The gateway gives every route of one endpoint the same limit, sized by max_connections.
    """

    def test_shared_per_endpoint(self) -> None:
        """
        Two routes in one region share a limit; a route in another region has its own.
        """
        base = BASE_CONFIG.replace("endpoint_url", "; endpoint_url") + "max_connections = 3\n"
        fake = FakeAWSGateway(
            """
            [route:/a/]
            backend = aws
            [route:/b/]
            backend = aws
            [route:/c/]
            backend = aws
            aws_region = eu-west-1
            """,
            base=base,
        )
        limits = fake.gateway.connection_limits
        self.assertEqual(sorted(limits), [
            "https://lambda.eu-west-1.amazonaws.com",
            "https://lambda.us-west-2.amazonaws.com",
        ])  # fmt: skip
        self.assertEqual({limit.limit for limit in limits.values()}, {3})
        a, b, c = (binding.invoker for binding in fake.gateway.bindings)
        assert isinstance(a, AWSInvoker) and isinstance(b, AWSInvoker)
        assert isinstance(c, AWSInvoker)
        self.assertIs(a._limit, b._limit)
        self.assertIsNot(a._limit, c._limit)

    def test_calls_wait_through_the_gateway(self) -> None:
        """
        Beyond max_connections, requests wait; each answer lets the next one go.
        """
        held = Held()
        fake = FakeAWSGateway(
            "[route:/fn/]\nbackend = aws\nsingle = fn\n",
            {"fn": held},
            base=BASE_CONFIG + "max_connections = 2\n",
        )
        answers = [fake.client.post("http://gw.test/fn/", data=b"{}") for _ in range(3)]
        fake.flush()
        self.assertEqual(len(fake.lambda_api.calls), 2)
        held.pending.pop(0).callback({"ok": True})
        fake.flush()
        self.assertEqual(len(fake.lambda_api.calls), 3)
        for d in held.pending:
            d.callback({"ok": True})
        fake.flush()
        for answer in answers:
            self.assertEqual(self.successResultOf(answer).code, 200)
