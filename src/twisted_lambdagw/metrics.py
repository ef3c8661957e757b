"""
Prometheus metrics, counted from the resource's L{Exchange} records.

The metrics live in a registry owned by one gateway, not in
prometheus-client's global default registry: two gateways in one process (an
embedding application, the tests) never collide, and an application that
has its own registry can expose this one beside it.

Function names come from clients, so they are labels only when they cannot
grow without bound: a name becomes a label once a request for it passed the
route's checks and was invoked, and Lambda did not answer that no such
function exists; past C{max_functions} distinct names the rest count as
``other``.  Label sets are created once and kept, so a request costs a few
dictionary lookups and increments.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric

from .exchange import Exchange

OTHER = "other"
"""The label for names past the cap, or that Lambda said do not exist."""

NO_SUCH_FUNCTION = "ResourceNotFoundException"

BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
"""Seconds: up to Lambda's longest timeout, 15 minutes."""

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "client_gone")


def status_class(status: int) -> str:
    """
    ``2xx`` and so on; ``client_gone`` when no status was written.
    """
    if 100 <= status <= 599:
        return STATUS_CLASSES[status // 100 - 1]
    return "client_gone"


class WithLabel:
    """
    A registry's metrics with one more label on every sample, for the page.

    The label is added when the page is made, not to every metric: counting
    a request costs the same with it as without.
    """

    def __init__(self, registry: CollectorRegistry, name: str, value: str) -> None:
        self._registry = registry
        self._name = name
        self._value = value

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            labelled = copy.copy(family)
            labelled.samples = [
                sample._replace(labels={**sample.labels, self._name: self._value})
                for sample in family.samples
            ]
            yield labelled


class GatewayMetrics:
    """
    The gateway's metrics: an exchange observer, and the page the resource
    serves at ``metrics_path``.

    :param routes: the configured route prefixes, whose label sets are made
        up front.
    :param in_flight: read at each scrape for ``lambdagw_in_flight``.
    :param registry: where the metrics are registered; a new one by default.
    :param max_functions: how many distinct function names become labels.
    :param max_codes: how many distinct error codes become labels.
    :param worker: with ``workers = N``, which process this is (0 is the
        parent): every sample on the page gets a ``worker`` label, so the
        series of the N processes stay apart.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        routes: Iterable[str] = (),
        *,
        in_flight: Callable[[], float] | None = None,
        registry: CollectorRegistry | None = None,
        max_functions: int = 1000,
        max_codes: int = 100,
        worker: int | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._page: CollectorRegistry | WithLabel = self.registry
        if worker is not None:
            self._page = WithLabel(self.registry, "worker", str(worker))
        self._max_functions = max_functions
        self._max_codes = max_codes
        self._functions: set[str] = set()
        self._requests = Counter(
            "lambdagw_requests",
            "Requests answered (or abandoned by the client), by route, function and status class.",
            ["route", "function", "status_class"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "lambdagw_request_duration_seconds",
            "Time from a request's arrival to its last byte written, by route.",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._invoke_seconds = Histogram(
            "lambdagw_invoke_duration_seconds",
            "Time spent waiting for Lambda, by route.",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._invoke_errors = Counter(
            "lambdagw_invoke_errors",
            "Invocations that failed, by AWS error code (InvokeTimeout: past the"
            " route's timeout; InvokeFailed: no answer from Lambda).",
            ["code"],
            registry=self.registry,
        )
        self._function_errors = Counter(
            "lambdagw_function_errors",
            "Invocations in which the function reported an error, by function.",
            ["function"],
            registry=self.registry,
        )
        in_flight_gauge = Gauge(
            "lambdagw_in_flight", "Invocations under way now.", registry=self.registry
        )
        if in_flight is not None:
            in_flight_gauge.set_function(in_flight)
        self._codes: set[str] = set()
        self._request_children: dict[tuple[str, str, str], Counter] = {}
        self._timers: dict[str, tuple[Histogram, Histogram]] = {}
        for route in ["", *routes]:
            self._route_timers(route)
            for cls in STATUS_CLASSES:
                self._request_child(route, "", cls)

    def render(self) -> bytes:
        """
        The metrics in Prometheus text format.
        """
        page: bytes = generate_latest(self._page)
        return page

    def __call__(self, exchange: Exchange) -> None:
        route = exchange.route or ""
        function = self._function_label(exchange)
        self._request_child(route, function, status_class(exchange.status)).inc()
        request_seconds, invoke_seconds = self._route_timers(route)
        duration = exchange.duration
        if duration is not None:
            request_seconds.observe(duration)
        invoke_duration = exchange.invoke_duration
        if invoke_duration is not None:
            invoke_seconds.observe(invoke_duration)
        if exchange.error_code is not None:
            code = exchange.error_code
            if code not in self._codes:
                if len(self._codes) >= self._max_codes:
                    code = OTHER
                else:
                    self._codes.add(code)
            self._invoke_errors.labels(code).inc()
        if exchange.function_error is not None:
            self._function_errors.labels(function).inc()

    def _function_label(self, exchange: Exchange) -> str:
        name = exchange.function
        if name is None or exchange.invoke_started is None:
            return ""
        if name in self._functions:
            return name
        if exchange.error_code == NO_SUCH_FUNCTION or len(self._functions) >= self._max_functions:
            return OTHER
        self._functions.add(name)
        return name

    def _route_timers(self, route: str) -> tuple[Histogram, Histogram]:
        timers = self._timers.get(route)
        if timers is None:
            timers = self._timers[route] = (
                self._request_seconds.labels(route),
                self._invoke_seconds.labels(route),
            )
        return timers

    def _request_child(self, route: str, function: str, cls: str) -> Counter:
        key = (route, function, cls)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self._requests.labels(route, function, cls)
        return child
