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
C{other}.  Label sets are created once and kept, so a request costs a few
dictionary lookups and increments.

The counts are plain numbers, turned into prometheus-client's metric
families only when the page is made (a custom collector): a Counter or
Histogram from prometheus-client takes a lock and several calls for each
increment, which made counting a request cost more than signing it.  The
page is the same as with those classes, C{_created} samples included.
"""

from __future__ import annotations

import copy
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from twisted_lambdagw._compat import prometheus_uses_created
from twisted_lambdagw.core.exchange import Exchange

OTHER = "other"
"""The label for names past the cap, or that Lambda said do not exist."""

NO_SUCH_FUNCTION = "ResourceNotFoundException"

BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
"""Seconds: up to Lambda's longest timeout, 15 minutes."""

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "client_gone")

_BOUNDS = (*BUCKETS, float("inf"))
_LE = [floatToGoString(bound) for bound in _BOUNDS]

REQUESTS = (
    "lambdagw_requests",
    "Requests answered (or abandoned by the client), by route, function and status class.",
)
REQUEST_SECONDS = (
    "lambdagw_request_duration_seconds",
    "Time from a request's arrival to its last byte written, by route.",
)
INVOKE_SECONDS = ("lambdagw_invoke_duration_seconds", "Time spent waiting for Lambda, by route.")
INVOKE_ERRORS = (
    "lambdagw_invoke_errors",
    "Invocations that failed, by AWS error code (InvokeTimeout: past the"
    " route's timeout; InvokeFailed: no answer from Lambda).",
)
FUNCTION_ERRORS = (
    "lambdagw_function_errors",
    "Invocations in which the function reported an error, by function.",
)
IN_FLIGHT = ("lambdagw_in_flight", "Invocations under way now.")
RATE_LIMITED = (
    "lambdagw_rate_limited",
    "Requests refused (429) by a rate limit or quota, by route, key kind and limit (rate, quota).",
)
STORE_ERRORS = (
    "lambdagw_limits_store_errors",
    "Limit checks the limits store could not answer (down, slow or refusing).",
)
AUTHORIZER_DECISIONS = (
    "lambdagw_authorizer_decisions",
    "Requests decided by a route's authorizer, by route and outcome (allowed, missing,"
    " invalid, denied, failed).",
)
AUTHORIZER_CACHE = (
    "lambdagw_authorizer_cache",
    "Lambda authorizer answers looked up in the result cache, by route and result (hit, miss).",
)

K = TypeVar("K")


def status_class(status: int) -> str:
    """
    C{2xx} and so on; C{client_gone} when no status was written.
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


class _Count:
    """
    One counter's value for one label set, and when that label set was made.
    """

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class _Timings:
    """
    One histogram's buckets (not cumulative) and sum for one label set.
    """

    __slots__ = ("buckets", "created", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(_BOUNDS)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        # The first bound at or above the value, as prometheus-client counts.
        self.buckets[bisect_left(_BOUNDS, seconds)] += 1
        self.sum += seconds


class GatewayMetrics:
    """
    The gateway's metrics: an exchange observer, and the page the resource
    serves at C{metrics_path}.

    @param routes: the configured route prefixes, whose label sets are made
        up front.
    @param in_flight: read at each scrape for C{lambdagw_in_flight}.
    @param registry: where the metrics are registered; a new one by default.
    @param max_functions: how many distinct function names become labels.
    @param max_codes: how many distinct error codes become labels.
    @param worker: with C{workers = N}, which process this is (0 is the
        parent): every sample on the page gets a C{worker} label, so the
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
        self._in_flight = in_flight
        self._requests: dict[tuple[str, str, str], _Count] = {}
        self._timers: dict[str, tuple[_Timings, _Timings]] = {}
        self._invoke_errors: dict[str, _Count] = {}
        self._function_errors: dict[str, _Count] = {}
        self._rate_limited: dict[tuple[str, str, str], _Count] = {}
        self._store_errors = _Count()
        self._authorizer: dict[tuple[str, str], _Count] = {}
        self._authorizer_cache: dict[tuple[str, str], _Count] = {}
        for route in ["", *routes]:
            self._route_timers(route)
            for cls in STATUS_CLASSES:
                self._request_count(route, "", cls)
        self.registry.register(self)

    def render(self) -> bytes:
        """
        The metrics in Prometheus text format.
        """
        page: bytes = generate_latest(self._page)
        return page

    def __call__(self, exchange: Exchange) -> None:
        route = exchange.route or ""
        function = self._function_label(exchange)
        self._request_count(route, function, status_class(exchange.status)).value += 1
        request_seconds, invoke_seconds = self._route_timers(route)
        duration = exchange.duration
        if duration is not None:
            request_seconds.observe(duration)
        invoke_duration = exchange.invoke_duration
        if invoke_duration is not None:
            invoke_seconds.observe(invoke_duration)
        if exchange.error_code is not None:
            code = exchange.error_code
            if code not in self._invoke_errors and len(self._invoke_errors) >= self._max_codes:
                code = OTHER
            _count(self._invoke_errors, code).value += 1
        if exchange.function_error is not None:
            _count(self._function_errors, function).value += 1
        if exchange.authorizer is not None:
            _count(self._authorizer, (route, exchange.authorizer)).value += 1
        if exchange.authorizer_cache is not None:
            _count(self._authorizer_cache, (route, exchange.authorizer_cache)).value += 1
        if exchange.limited is not None:
            kind, _, limit = exchange.limited.partition(":")
            _count(self._rate_limited, (route, kind, limit)).value += 1

    def limits_store_error(self) -> None:
        """
        Count one limit check the limits store could not answer.
        """
        self._store_errors.value += 1

    def describe(self) -> Iterator[Metric]:
        """
        The metric families, without samples: for the registry's name checks.
        """
        yield CounterMetricFamily(*REQUESTS, labels=["route", "function", "status_class"])
        yield HistogramMetricFamily(*REQUEST_SECONDS, labels=["route"])
        yield HistogramMetricFamily(*INVOKE_SECONDS, labels=["route"])
        yield CounterMetricFamily(*INVOKE_ERRORS, labels=["code"])
        yield CounterMetricFamily(*FUNCTION_ERRORS, labels=["function"])
        yield CounterMetricFamily(*AUTHORIZER_DECISIONS, labels=["route", "outcome"])
        yield CounterMetricFamily(*AUTHORIZER_CACHE, labels=["route", "result"])
        yield GaugeMetricFamily(*IN_FLIGHT)
        yield CounterMetricFamily(*RATE_LIMITED, labels=["route", "key", "limit"])
        yield CounterMetricFamily(*STORE_ERRORS)

    def collect(self) -> Iterator[Metric]:
        """
        The metric families with the counts so far, as prometheus-client's
        Counter, Histogram and Gauge would show them.
        """
        created = prometheus_uses_created()
        requests = CounterMetricFamily(*REQUESTS, labels=["route", "function", "status_class"])
        for labels, count in self._requests.items():
            requests.add_metric(labels, count.value, created=count.created if created else None)
        yield requests
        for index, (name, documentation) in enumerate((REQUEST_SECONDS, INVOKE_SECONDS)):
            family = HistogramMetricFamily(name, documentation, labels=["route"])
            for route, timers in self._timers.items():
                timings = timers[index]
                total = 0.0
                buckets = []
                for le, in_bucket in zip(_LE, timings.buckets, strict=True):
                    total += in_bucket
                    buckets.append((le, total))
                family.add_metric([route], buckets, timings.sum)
                if created:
                    family.samples.append(
                        Sample(f"{name}_created", {"route": route}, timings.created)
                    )
            yield family
        for (name, documentation), counts, label in (
            (INVOKE_ERRORS, self._invoke_errors, "code"),
            (FUNCTION_ERRORS, self._function_errors, "function"),
        ):
            errors = CounterMetricFamily(name, documentation, labels=[label])
            for value, count in counts.items():
                errors.add_metric([value], count.value, created=count.created if created else None)
            yield errors
        for (name, documentation), pairs, label in (
            (AUTHORIZER_DECISIONS, self._authorizer, "outcome"),
            (AUTHORIZER_CACHE, self._authorizer_cache, "result"),
        ):
            decided = CounterMetricFamily(name, documentation, labels=["route", label])
            for pair, count in pairs.items():
                decided.add_metric(pair, count.value, created=count.created if created else None)
            yield decided
        in_flight = self._in_flight
        yield GaugeMetricFamily(*IN_FLIGHT, value=0.0 if in_flight is None else in_flight())
        limited = CounterMetricFamily(*RATE_LIMITED, labels=["route", "key", "limit"])
        for labels, count in self._rate_limited.items():
            limited.add_metric(labels, count.value, created=count.created if created else None)
        yield limited
        store_errors = CounterMetricFamily(*STORE_ERRORS)
        store_errors.add_metric(
            [],
            self._store_errors.value,
            created=self._store_errors.created if created else None,
        )
        yield store_errors

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

    def _route_timers(self, route: str) -> tuple[_Timings, _Timings]:
        timers = self._timers.get(route)
        if timers is None:
            timers = self._timers[route] = (_Timings(), _Timings())
        return timers

    def _request_count(self, route: str, function: str, cls: str) -> _Count:
        return _count(self._requests, (route, function, cls))


def _count(counts: dict[K, _Count], key: K) -> _Count:
    """
    The count for C{key}, made (at zero) on first use.
    """
    count = counts.get(key)
    if count is None:
        count = counts[key] = _Count()
    return count
