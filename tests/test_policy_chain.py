"""
The per-route policy chain: alone (stage order, short-circuits, the fast
path without coroutines) and run by the real resource through StubTreq
(answer headers on every answer, cleanups once, nothing invoked when a
step answers or refuses, the streamed path running the same chain).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, cast

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import Config, ConfigError
from twisted_lambdagw.core.errors import Unauthorized
from twisted_lambdagw.core.eventstream import InvokeComplete
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.core.messages import Reply
from twisted_lambdagw.invokers.base import InvokeCall, InvokeResult, StreamReceiver
from twisted_lambdagw.policies import (
    STAGES,
    Chain,
    InFlight,
    Passage,
    PolicyServices,
    Stage,
    Step,
    SyncStep,
    build_chain,
)
from twisted_lambdagw.policies.auth import basic_authenticator
from twisted_lambdagw.policies.build import admit_steps
from twisted_lambdagw.policies.chain import ChainError
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.testing import Handler, InProcessInvoker

from .auth_fixtures import ALICE_HASH, InlineThreads, basic, write
from .gateway_fixtures import FakeAWSGateway, config_from
from .scratch import temp_path

ROUTE = "[route:/lambda/]\naws_region = us-east-1\ntimeout = 10s\n"


def envelope(status: int = 200, body: str = "ok", **headers: str) -> dict[str, Any]:
    return {"type": "HTTPJSON-REP", "meta": {"status": status, "headers": headers}, "body": body}


class Recorded:
    """
    A test step that waits (a coroutine): records its name, then goes on,
    answers C{reply}, or raises C{error}.
    """

    stage: ClassVar[Stage] = "admit"

    def __init__(
        self,
        name: str,
        log: list[str],
        reply: Reply | None = None,
        error: Exception | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.reply = reply
        self.error = error

    async def __call__(self, passage: Passage) -> Reply | None:
        self.log.append(self.name)
        if self.error is not None:
            raise self.error
        return self.reply

    def describe(self) -> str:
        return self.name


class Cors(Recorded):
    stage: ClassVar[Stage] = "cors"


class LimitBefore(Recorded):
    stage: ClassVar[Stage] = "limit-before-auth"


class Authorize(Recorded):
    stage: ClassVar[Stage] = "authorize"


class LimitAfter(Recorded):
    stage: ClassVar[Stage] = "limit-after-auth"


class Admit(Recorded):
    stage: ClassVar[Stage] = "admit"


class Noted(SyncStep):
    """
    A test step that never waits: records its name and goes on.
    """

    stage: ClassVar[Stage] = "limit-before-auth"

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def check(self, passage: Passage) -> Reply | None:
        self.log.append(self.name)
        return None

    def describe(self) -> str:
        return self.name


class Marker(SyncStep):
    """
    A test step adding answer headers (and replacing some of a function's),
    as CORS and the rate limits do.
    """

    stage: ClassVar[Stage] = "cors"

    def __init__(
        self,
        headers: Sequence[tuple[str, str]] = (("X-Policy", "on"),),
        replaced: Iterable[str] = (),
    ) -> None:
        self.headers = list(headers)
        self.replaced = set(replaced)

    def check(self, passage: Passage) -> Reply | None:
        passage.answer_headers.extend(self.headers)
        passage.replaced.update(self.replaced)
        return None

    def describe(self) -> str:
        return "marker"


class Counted(SyncStep):
    """
    A test step registering a cleanup that counts its calls.
    """

    stage: ClassVar[Stage] = "authorize"

    def __init__(self) -> None:
        self.cleaned = 0

    def check(self, passage: Passage) -> Reply | None:
        passage.cleanups.append(self.cleanup)
        return None

    def cleanup(self) -> None:
        self.cleaned += 1

    def describe(self) -> str:
        return "counted"


def passage() -> Passage:
    """
    A passage for running chains alone (the steps here read nothing of it).
    """
    nothing: Any = None
    return Passage(nothing, "rid", nothing, nothing, "/", "/", nothing)


class ChainTests(SynchronousTestCase):
    """
    A chain alone: the order of its stages, what ends it, how it runs.
    """

    def run_chain(self, chain: Chain) -> Reply | None:
        return self.successResultOf(Deferred.fromCoroutine(chain.run(passage())))

    def test_stages_are_ordered_at_build_time(self) -> None:
        """
        Steps run in the order of STAGES whatever order they were given in;
        steps of one stage keep theirs.
        """
        log: list[str] = []
        chain = Chain(
            [
                Admit("admit-1", log),
                LimitAfter("after", log),
                Authorize("auth", log),
                Admit("admit-2", log),
                LimitBefore("before", log),
                Cors("cors", log),
            ]
        )
        expected = ["cors", "before", "auth", "after", "admit-1", "admit-2"]
        self.assertEqual([cast(Recorded, s).name for s in chain.steps], expected)
        self.assertIsNone(self.run_chain(chain))
        self.assertEqual(log, expected)
        self.assertEqual([s.stage for s in chain.steps], [*STAGES, "admit"])

    def test_unknown_stage_is_refused(self) -> None:
        """
        A step of no known stage is refused when the chain is built.
        """

        class Late:
            stage = "after-invoke"

            async def __call__(self, passage: Passage) -> Reply | None:
                return None

            def describe(self) -> str:
                return "late"

        with self.assertRaises(ChainError) as raised:
            Chain([cast(Step, Late())])
        self.assertIn("after-invoke", str(raised.exception))

    def test_reply_short_circuits(self) -> None:
        """
        A step's Reply ends the chain: no later step runs.
        """
        log: list[str] = []
        preflight = Reply(204, (), b"")
        chain = Chain([Authorize("auth", log), Cors("cors", log, reply=preflight)])
        self.assertIs(self.run_chain(chain), preflight)
        self.assertEqual(log, ["cors"])

    def test_error_ends_the_chain(self) -> None:
        """
        A step's GatewayError comes out of run; no later step runs.
        """
        log: list[str] = []
        chain = Chain([Authorize("auth", log, error=Unauthorized()), Admit("admit", log)])
        failure = self.failureResultOf(Deferred.fromCoroutine(chain.run(passage())))
        failure.trap(Unauthorized)
        self.assertEqual(log, ["auth"])

    def test_chain_that_never_waits(self) -> None:
        """
        A chain of SyncSteps alone runs without a coroutine, with run_now,
        and as ever with run; one step that waits makes it a waiting chain.
        """
        log: list[str] = []
        chain = Chain([Noted("a", log), Noted("b", log)])
        self.assertFalse(chain.waits)
        self.assertIsNone(chain.run_now(passage()))
        self.assertIsNone(self.run_chain(chain))
        self.assertEqual(log, ["a", "b", "a", "b"])
        waiting = Chain([Noted("a", log), Admit("c", log)])
        self.assertTrue(waiting.waits)
        with self.assertRaises(AssertionError):
            waiting.run_now(passage())

    def test_sync_step_is_a_step(self) -> None:
        """
        Awaiting a SyncStep calls its check, so anything may run it as a Step.
        """
        log: list[str] = []
        step: Step = Noted("n", log)
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(step(passage()))))
        self.assertEqual(log, ["n"])

    def test_describe(self) -> None:
        """
        One line per step, in the order they run, with the stage.
        """
        log: list[str] = []
        chain = Chain([Admit("admit", log), Cors("cors", log)])
        self.assertEqual(chain.describe(), ["cors: cors", "admit: admit"])


class PassageTests(SynchronousTestCase):
    """
    What a passage does to an answer's headers, and its cleanups.
    """

    def test_headers_for(self) -> None:
        """
        Replaced names go, whatever their case; answer headers come after.
        """
        p = passage()
        p.replaced.add("access-control-allow-origin")
        p.answer_headers.append(("Access-Control-Allow-Origin", "https://a.example"))
        headers = (("Access-Control-Allow-ORIGIN", "*"), ("X-Fn", "1"))
        self.assertEqual(
            p.headers_for(headers),
            (("X-Fn", "1"), ("Access-Control-Allow-Origin", "https://a.example")),
        )

    def test_answer_unchanged(self) -> None:
        """
        With nothing to add or remove, the reply itself is answered.
        """
        reply = Reply(200, (("X-Fn", "1"),), b"")
        self.assertIs(passage().answer(reply), reply)

    def test_cleanups_once_each(self) -> None:
        """
        Every cleanup runs once, in order, even after one fails (logged);
        finishing again runs nothing.
        """
        p = passage()
        calls: list[str] = []

        def failing() -> None:
            calls.append("failing")
            raise RuntimeError("cleanup broke")

        p.cleanups += [lambda: calls.append("first"), failing, lambda: calls.append("last")]
        with capturedLogs() as events:
            p.finish()
            p.finish()
        self.assertEqual(calls, ["first", "failing", "last"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [event] = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(event["request_id"], "rid")


class Served:
    """
    The real resource, its routes running C{steps} before the name check
    and the admission, through StubTreq (a real Site).
    """

    def __init__(
        self,
        steps: Sequence[Step | SyncStep],
        functions: dict[str, Handler],
        routes: str = ROUTE,
        *,
        max_in_flight: int | None = None,
        invoker: Any = None,
    ) -> None:
        self.clock = Clock()
        self.config = config_from(routes)
        self.in_flight = InFlight(max_in_flight)
        self.invoker = invoker if invoker is not None else InProcessInvoker(functions)
        bindings = [
            Binding(
                route,
                self.invoker,
                get_format(route.format),
                Chain([*steps, *admit_steps(self.in_flight)]),
            )
            for route in self.config.routes
        ]
        self.resource = GatewayResource(bindings, self.clock, in_flight=self.in_flight)
        self.client: Any = StubTreq(self.resource)

    def request(self, url: str, method: str = "GET", **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = self.client.request(method, url, **kwargs)
        self.client.flush()
        return d


class AnswerHeadersTests(SynchronousTestCase):
    """
    Every answer to a routed request carries the chain's answer headers.
    """

    def setUp(self) -> None:
        def fails(event: Any, context: Any) -> Any:
            raise ValueError("boom")

        functions: dict[str, Handler] = {
            "fn": lambda event, context: envelope(200, "hi", **{"X-Policy": "fn", "X-Fn": "1"}),
            "fails": fails,
        }
        self.served = Served([Marker(replaced={"x-policy"})], functions)

    def get(self, url: str) -> Any:
        return self.successResultOf(self.served.request(url))

    def test_on_a_reply(self) -> None:
        """
        A function's reply loses the replaced header and gets the step's.
        """
        response = self.get("http://gw/lambda/fn")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("x-policy"), ["on"])
        self.assertEqual(response.headers.getRawHeaders("x-fn"), ["1"])
        self.assertEqual(self.successResultOf(response.content()), b"hi")

    def test_on_a_404(self) -> None:
        """
        A name the route refuses is a 404 with the answer headers.
        """
        response = self.get("http://gw/lambda/no.such")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.headers.getRawHeaders("x-policy"), ["on"])
        self.assertEqual(self.served.invoker.calls, [])

    def test_on_a_502(self) -> None:
        """
        A function error is a 502 with the answer headers and the error contract.
        """
        response = self.get("http://gw/lambda/fails")
        self.assertEqual(response.code, 502)
        self.assertEqual(response.headers.getRawHeaders("x-policy"), ["on"])
        document = json.loads(self.successResultOf(response.content()))
        self.assertEqual(document["error"], "function error")
        self.assertEqual([document["request_id"]], response.headers.getRawHeaders("x-request-id"))

    def test_on_a_503_at_capacity(self) -> None:
        """
        The admission's refusal carries them too, with its Retry-After.
        """
        pending: Deferred[Any] = Deferred()
        served = Served([Marker()], {"slow": lambda event, context: pending}, max_in_flight=1)
        first = served.request("http://gw/lambda/slow")
        refused = self.successResultOf(served.request("http://gw/lambda/slow"))
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(refused.headers.getRawHeaders("x-policy"), ["on"])
        self.assertEqual(served.resource.in_flight, 1)
        pending.callback(envelope())
        served.client.flush()
        self.assertEqual(self.successResultOf(first).code, 200)
        self.assertEqual(served.resource.in_flight, 0)

    def test_not_before_a_route(self) -> None:
        """
        A path no route matches has no chain, so no answer headers.
        """
        response = self.get("http://gw/elsewhere")
        self.assertEqual(response.code, 404)
        self.assertIsNone(response.headers.getRawHeaders("x-policy"))


class StepAnswersTests(SynchronousTestCase):
    """
    A step that answers or refuses: nothing is invoked, the answer is written once.
    """

    def test_step_reply(self) -> None:
        """
        A step's Reply is the answer, with the answer headers and the request id.
        """
        log: list[str] = []
        preflight = Reply(204, (("Access-Control-Max-Age", "600"),), b"")
        served = Served(
            [Marker(), Cors("preflight", log, reply=preflight)], {"fn": lambda e, c: envelope()}
        )
        response = self.successResultOf(served.request("http://gw/lambda/fn", method="OPTIONS"))
        self.assertEqual(response.code, 204)
        self.assertEqual(response.headers.getRawHeaders("access-control-max-age"), ["600"])
        self.assertEqual(response.headers.getRawHeaders("x-policy"), ["on"])
        self.assertTrue(response.headers.getRawHeaders("x-request-id"))
        self.assertEqual(served.invoker.calls, [])
        self.assertEqual(served.resource.in_flight, 0)

    def test_step_refusal(self) -> None:
        """
        A step's GatewayError is the JSON error contract with the answer
        headers and its own; no slot is taken, nothing is invoked.
        """
        log: list[str] = []
        refusal = Unauthorized(challenge='Bearer realm="api"')
        served = Served(
            [Marker(), Authorize("auth", log, error=refusal)], {"fn": lambda e, c: envelope()}
        )
        response = self.successResultOf(served.request("http://gw/lambda/fn"))
        self.assertEqual(response.code, 401)
        self.assertEqual(response.headers.getRawHeaders("www-authenticate"), ['Bearer realm="api"'])
        self.assertEqual(response.headers.getRawHeaders("x-policy"), ["on"])
        document = json.loads(self.successResultOf(response.content()))
        self.assertEqual(document["error"], "authentication required")
        self.assertEqual(served.invoker.calls, [])
        self.assertEqual(served.resource.in_flight, 0)


class CleanupTests(SynchronousTestCase):
    """
    A passage's cleanups run exactly once, however the request ends.
    """

    def setUp(self) -> None:
        self.pending: Deferred[Any] = Deferred()

        def fails(event: Any, context: Any) -> Any:
            raise ValueError("boom")

        self.step = Counted()
        self.served = Served(
            [self.step],
            {
                "fn": lambda e, c: envelope(),
                "fails": fails,
                "slow": lambda e, c: self.pending,
            },
        )

    def test_success(self) -> None:
        response = self.successResultOf(self.served.request("http://gw/lambda/fn"))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.step.cleaned, 1)

    def test_error(self) -> None:
        response = self.successResultOf(self.served.request("http://gw/lambda/fails"))
        self.assertEqual(response.code, 502)
        self.assertEqual(self.step.cleaned, 1)

    def test_refused_after_the_step(self) -> None:
        """
        A later step's refusal (the name check's 404) still runs the cleanup.
        """
        response = self.successResultOf(self.served.request("http://gw/lambda/no.such"))
        self.assertEqual(response.code, 404)
        self.assertEqual(self.step.cleaned, 1)

    def test_client_gone(self) -> None:
        d = self.served.request("http://gw/lambda/slow")
        self.assertEqual((self.step.cleaned, self.served.resource.in_flight), (0, 1))
        d.cancel()
        self.served.client.flush()
        self.failureResultOf(d)
        self.assertEqual((self.step.cleaned, self.served.resource.in_flight), (1, 0))
        self.pending.callback(envelope())
        self.served.client.flush()
        self.assertEqual(self.step.cleaned, 1)

    def test_timeout(self) -> None:
        d = self.served.request("http://gw/lambda/slow")
        self.served.clock.advance(9)
        self.assertEqual(self.step.cleaned, 0)
        self.served.clock.advance(2)
        self.served.client.flush()
        self.assertEqual(self.successResultOf(d).code, 504)
        self.assertEqual((self.step.cleaned, self.served.resource.in_flight), (1, 0))


class OneChunkStream:
    """
    A ResponseStream that delivers one body chunk and completes.
    """

    aws_request_id: str | None = "stream-id"
    executed_version: str | None = "$LATEST"

    def start(self, receiver: StreamReceiver) -> None:
        receiver.stream_data(b"streamed")
        receiver.stream_complete(InvokeComplete())

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class StreamingStub:
    """
    A StreamingInvoker whose streams are L{OneChunkStream}s.
    """

    def __init__(self) -> None:
        self.calls: list[InvokeCall] = []

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        raise AssertionError("a streamed route invokes with invoke_stream")

    async def invoke_stream(self, call: InvokeCall) -> OneChunkStream:
        self.calls.append(call)
        return OneChunkStream()


STREAMED = ROUTE + "stream = yes\nstream_prelude = never\n"


class StreamedChainTests(SynchronousTestCase):
    """
    Streamed routes run the same chain, and their head gets the answer headers.
    """

    def test_answer_headers_on_the_streamed_head(self) -> None:
        invoker = StreamingStub()
        marker = Marker(
            headers=[("Content-Type", "text/plain"), ("X-Policy", "on")], replaced={"content-type"}
        )
        served = Served([marker], {}, STREAMED, invoker=invoker)
        response = self.successResultOf(served.request("http://gw/lambda/fn"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/plain"])
        self.assertEqual(response.headers.getRawHeaders("x-policy"), ["on"])
        self.assertEqual(self.successResultOf(response.content()), b"streamed")
        self.assertEqual(len(invoker.calls), 1)
        self.assertEqual(served.resource.in_flight, 0)

    def test_refusal_before_the_stream(self) -> None:
        invoker = StreamingStub()
        log: list[str] = []
        served = Served(
            [Authorize("auth", log, error=Unauthorized())], {}, STREAMED, invoker=invoker
        )
        response = self.successResultOf(served.request("http://gw/lambda/fn"))
        self.assertEqual(response.code, 401)
        self.assertEqual(invoker.calls, [])


BASIC = """
[auth]
users_file = {users}

[route:/lambda/]
aws_region = us-east-1
auth = basic

[route:/open/]
aws_region = us-east-1
auth = none
"""


class BuildChainTests(SynchronousTestCase):
    """
    build_chain composes a route's steps from the config.
    """

    def setUp(self) -> None:
        self.users = temp_path(self)
        write(self.users, f"alice:{ALICE_HASH}\n")
        self.config: Config = config_from(BASIC.format(users=self.users))
        self.events: list[Any] = []

        def echo(event: Any, context: Any) -> Any:
            self.events.append(event)
            return envelope()

        self.invoker = InProcessInvoker({"fn": echo})

    def served(self, services: PolicyServices) -> Any:
        bindings = [
            Binding(
                route,
                self.invoker,
                get_format(route.format),
                build_chain(route, self.config, services),
            )
            for route in self.config.routes
        ]
        return StubTreq(GatewayResource(bindings, Clock(), in_flight=services.in_flight))

    def services(self) -> PolicyServices:
        return PolicyServices(
            Clock(),
            in_flight=InFlight(5),
            authenticator=basic_authenticator(self.users, "gw", InlineThreads()),
        )

    def test_steps_of_each_route(self) -> None:
        services = self.services()
        guarded, open_route = self.config.routes
        self.assertEqual(
            build_chain(guarded, self.config, services).describe(),
            [
                "authorize: auth basic ([auth] users_file)",
                "admit: function name and body size",
                "admit: admission (max_in_flight 5)",
            ],
        )
        chain = build_chain(open_route, self.config, services)
        self.assertFalse(chain.waits)
        self.assertEqual(len(chain.steps), 2)

    def test_basic_refused_nothing_invoked(self) -> None:
        """
        Without the right login, 401 with the Basic challenge, nothing invoked.
        """
        client = self.served(self.services())
        for headers in [{}, {"Authorization": basic("alice", "wrong")}]:
            d = client.get("http://gw/lambda/fn", headers=headers)
            client.flush()
            response = self.successResultOf(d)
            self.assertEqual(response.code, 401)
            [challenge] = response.headers.getRawHeaders("www-authenticate")
            self.assertTrue(challenge.startswith("Basic "))
        self.assertEqual(self.invoker.calls, [])

    def test_basic_principal_is_the_user(self) -> None:
        """
        The login's user reaches the function as X-Authenticated-User,
        whatever the client sent under that name.
        """
        client = self.served(self.services())
        headers = {"Authorization": basic("alice", "wonderland"), "X-Authenticated-User": "root"}
        d = client.get("http://gw/lambda/fn", headers=headers)
        client.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        [event] = self.events
        self.assertEqual(event["meta"]["headers"]["x-authenticated-user"], ["alice"])

    def test_basic_without_authenticator(self) -> None:
        """
        A basic route with no login check to use is a config error naming the key.
        """
        with self.assertRaises(ConfigError) as raised:
            build_chain(self.config.routes[0], self.config, PolicyServices(Clock()))
        self.assertIn("test.ini: [route:/lambda/] auth:", str(raised.exception))

    def test_gateway_builds_each_route_chain(self) -> None:
        """
        Gateway builds every route's chain at startup, admission sharing its in_flight.
        """
        gw = FakeAWSGateway(
            "[route:/lambda/]\n",
            run_in_thread=InlineThreads(),
        )
        [binding] = gw.gateway.bindings
        assert binding.chain is not None
        self.assertEqual(binding.chain.describe()[-1], "admit: admission (max_in_flight 10000)")
        self.assertEqual(gw.gateway.policies.in_flight.limit, 10000)
