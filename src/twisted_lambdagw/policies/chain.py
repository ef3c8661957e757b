"""
The per-route policy chain: what a request passes through between the route
match and the invoke.

Each step is a small object of its own, configured per route and built at
startup (L{twisted_lambdagw.policies.build.build_chain}).  Steps run in a
fixed order of stages, whatever order they were configured in, as API
Gateway runs them: a CORS preflight is answered before anything else,
limits keyed by the route or the client come before authorization (so a
flood never reaches an authorizer), limits keyed by the user after it, and
the name and body checks and the in-flight admission last, right before the
invoke.

A step goes on (returns None), answers now (returns a L{Reply}: nothing is
invoked), or refuses (raises a L{GatewayError}).  Whatever the answer, the
resource adds the passage's C{answer_headers} to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from twisted.logger import Logger

from twisted_lambdagw.core.messages import Headers, Reply

if TYPE_CHECKING:
    from twisted.web.server import Request

    from twisted_lambdagw.core.config import RouteConfig
    from twisted_lambdagw.core.exchange import Exchange
    from twisted_lambdagw.core.proxies import Origin
    from twisted_lambdagw.core.routing import Target

Stage = Literal["cors", "limit-before-auth", "authorize", "limit-after-auth", "admit"]

STAGES: tuple[Stage, ...] = ("cors", "limit-before-auth", "authorize", "limit-after-auth", "admit")
"""
The stages in the order they run: CORS preflight, limits keyed by
route/client/header, authorization, limits keyed by user, then the name and
body checks and the in-flight admission, right before the invoke.
"""

_RANK: Mapping[str, int] = {stage: rank for rank, stage in enumerate(STAGES)}


@dataclass(slots=True)
class Principal:
    """
    Who the request was authorized as.

    @ivar user: what the function sees as C{X-Authenticated-User}: a JWT's
        C{sub}, a Lambda authorizer's C{principalId}, a basic-auth user name.
    @ivar source: which kind of authorization decided it.
    @ivar claims: a JWT's claims.
    @ivar scopes: a JWT's scopes (C{scope} or C{scp}).
    @ivar context: a Lambda authorizer's context (with C{principalId} for
        payload format 1.0).
    """

    user: str
    source: Literal["basic", "jwt", "lambda"]
    claims: Mapping[str, object] | None = None
    scopes: tuple[str, ...] | None = None
    context: Mapping[str, object] | None = None


class Passage:
    """
    One request on its way through its route's chain.

    @ivar request: the twisted.web request (headers, args, client).
    @ivar request_id: the id the answer and the function's event carry.
    @ivar route: the route the path matched.
    @ivar origin: the client's address, scheme and port, as
        C{trusted_proxies} decide them.
    @ivar raw_path: the request path as received (checked, not decoded).
    @ivar path: the request path, percent-decoded.
    @ivar exchange: the access-log and metrics record of the request; steps
        set what they learn on it (C{user}, for instance).
    @ivar principal: who the request was authorized as, set by the
        authorization step; None on routes without one.
    @ivar target: the function (and qualifier) the request invokes, set by
        the name check of the C{admit} stage; None until then.
    @ivar answer_headers: added to every answer to this request: a
        function's reply, a gateway error, a step's own L{Reply}.
    @ivar replaced: lower-case names of headers removed from an answer's own
        headers before C{answer_headers} are added (say, CORS headers a
        function set itself).
    @ivar cleanups: called once each when the request is over, however it
        ended (answered, refused, failed, timed out, or the client left).
    """

    __slots__ = (
        "answer_headers",
        "cleanups",
        "exchange",
        "origin",
        "path",
        "principal",
        "raw_path",
        "replaced",
        "request",
        "request_id",
        "route",
        "target",
    )

    log = Logger()

    def __init__(
        self,
        request: Request,
        request_id: str,
        route: RouteConfig,
        origin: Origin,
        raw_path: str,
        path: str,
        exchange: Exchange,
    ) -> None:
        self.request = request
        self.request_id = request_id
        self.route = route
        self.origin = origin
        self.raw_path = raw_path
        self.path = path
        self.exchange = exchange
        self.principal: Principal | None = None
        self.target: Target | None = None
        self.answer_headers: list[tuple[str, str]] = []
        self.replaced: set[str] = set()
        self.cleanups: list[Callable[[], None]] = []

    def headers_for(self, headers: Headers) -> Headers:
        """
        An answer's headers as this request sends them: without the
        C{replaced} names, with the C{answer_headers} after them.
        """
        replaced = self.replaced
        if replaced:
            headers = tuple(h for h in headers if h[0].lower() not in replaced)
        if self.answer_headers:
            headers = (*headers, *self.answer_headers)
        return headers

    def answer(self, reply: Reply) -> Reply:
        """
        C{reply} with L{headers_for} applied (C{reply} itself when nothing changes).
        """
        if not self.replaced and not self.answer_headers:
            return reply
        return Reply(reply.status, self.headers_for(reply.headers), reply.body)

    def finish(self) -> None:
        """
        Run the cleanups, each once: a failing one is logged, the others still run.
        """
        cleanups = self.cleanups
        while cleanups:
            cleanup = cleanups.pop(0)
            try:
                cleanup()
            except Exception:
                self.log.failure(
                    "cleanup {cleanup!r} failed", cleanup=cleanup, request_id=self.request_id
                )


class Step(Protocol):
    """
    One policy of a route's chain.
    """

    stage: ClassVar[Stage]
    """Where in the chain it runs: one of L{STAGES}."""

    async def __call__(self, passage: Passage) -> Reply | None:
        """
        None: go on.  A L{Reply}: answer it now; nothing is invoked (a CORS
        preflight's 204).  Refuse by raising a L{GatewayError} subclass
        (401, 403, 429, 503...): the resource answers it with the JSON
        error contract and C{passage.answer_headers}.
        """
        ...

    def describe(self) -> str:
        """
        One line for C{lambdagw check}, e.g. C{auth basic}.
        """
        ...


class SyncStep:
    """
    A step that never waits: the chain calls L{check} directly.

    Awaiting a coroutine costs a coroutine object and a frame per step and
    request; a chain made of these alone runs with no coroutine at all
    (L{Chain.run_now}).  It is still a L{Step}: awaiting it calls L{check}.
    """

    __slots__ = ()

    stage: ClassVar[Stage]

    def check(self, passage: Passage) -> Reply | None:
        """
        As L{Step.__call__}, without waiting.
        """
        raise NotImplementedError

    async def __call__(self, passage: Passage) -> Reply | None:
        return self.check(passage)

    def describe(self) -> str:
        raise NotImplementedError


class ChainError(ValueError):
    """
    A chain was built from a step of no known stage.
    """


class Chain:
    """
    A route's steps, in the order of their stages.

    @ivar steps: the configured steps, sorted by stage at build time; steps
        of one stage keep the order they were given in.
    @ivar waits: whether any step may wait (is not a L{SyncStep}); when
        none does, L{run_now} runs the chain with no coroutine.
    """

    __slots__ = ("_checks", "_plan", "steps", "waits")

    def __init__(self, steps: Iterable[Step | SyncStep]) -> None:
        given = list(steps)
        for step in given:
            if getattr(step, "stage", None) not in _RANK:
                raise ChainError(
                    f"{step!r} has stage {getattr(step, 'stage', None)!r}, not one of {STAGES}"
                )
        self.steps: tuple[Step | SyncStep, ...] = tuple(
            sorted(given, key=lambda step: _RANK[step.stage])
        )
        self._plan: tuple[tuple[Callable[[Passage], Reply | None] | None, Step | SyncStep], ...]
        self._plan = tuple(
            (step.check if isinstance(step, SyncStep) else None, step) for step in self.steps
        )
        self._checks: Sequence[Callable[[Passage], Reply | None]] = tuple(
            check for check, _ in self._plan if check is not None
        )
        self.waits = len(self._checks) != len(self.steps)

    async def run(self, passage: Passage) -> Reply | None:
        """
        Run every step in order; the first L{Reply} ends the chain and is returned.
        """
        for check, step in self._plan:
            reply = check(passage) if check is not None else await step(passage)
            if reply is not None:
                return reply
        return None

    def run_now(self, passage: Passage) -> Reply | None:
        """
        L{run} for a chain that never waits (C{waits} is false).
        """
        assert not self.waits, "a chain with steps that wait runs with run()"
        for check in self._checks:
            reply = check(passage)
            if reply is not None:
                return reply
        return None

    def describe(self) -> list[str]:
        """
        One line per step, in the order they run.
        """
        return [f"{step.stage}: {step.describe()}" for step in self.steps]
