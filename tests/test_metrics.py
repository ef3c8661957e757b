"""
Prometheus metrics from the real gateway, read back through its metrics page
with prometheus-client's own parser.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.exchange import Exchange
from twisted_lambdagw.observe.metrics import GatewayMetrics, status_class
from twisted_lambdagw.testing import FakeContext, RawResponse

from .gateway_fixtures import FakeAWSGateway

ROUTES = "[route:/lambda/]\ntimeout = 10s\n\n[route:/special/]\nsingle = special-fn\n"


def ok(event: Any, context: FakeContext) -> Any:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": "ok"}


def broken(event: Any, context: FakeContext) -> Any:
    raise RuntimeError("broken")


def busy(event: Any, context: FakeContext) -> Any:
    return RawResponse.error(429, "TooManyRequestsException", "Rate exceeded")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(page: str) -> Samples:
    """
    Every sample on a metrics page, by name and sorted labels.
    """
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def requests(samples: Samples, **labels: str) -> float:
    return samples[("lambdagw_requests_total", tuple(sorted(labels.items())))]


class MetricsPageTests(SynchronousTestCase):
    """
    The gateway counts what it served and shows it at metrics_path.
    """

    def setUp(self) -> None:
        self.pending: Deferred[Any] = Deferred()
        self.gw = FakeAWSGateway(
            ROUTES,
            {
                "hello": ok,
                "broken": broken,
                "busy": busy,
                "slow": lambda event, context: self.pending,
                "special-fn": ok,
            },
        )

    def get(self, path: str) -> Any:
        d = self.gw.client.get(f"http://gw{path}")
        self.gw.flush()
        return d

    def scrape(self) -> Samples:
        response = self.successResultOf(self.get("/metrics"))
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            [CONTENT_TYPE_LATEST],
        )
        return parse(self.successResultOf(response.text()))

    def test_requests_by_route_function_and_status(self) -> None:
        """
        Served requests count under their route, function and status class.
        """
        for path in ("/lambda/hello", "/lambda/hello/x", "/special/a", "/lambda/broken"):
            self.get(path)
        samples = self.scrape()
        self.assertEqual(
            requests(samples, route="/lambda/", function="hello", status_class="2xx"), 2
        )
        self.assertEqual(
            requests(samples, route="/special/", function="special-fn", status_class="2xx"), 1
        )
        self.assertEqual(
            requests(samples, route="/lambda/", function="broken", status_class="5xx"), 1
        )
        self.assertEqual(samples[("lambdagw_function_errors_total", (("function", "broken"),))], 1)
        self.assertEqual(
            samples[("lambdagw_request_duration_seconds_count", (("route", "/lambda/"),))], 3
        )
        self.assertEqual(
            samples[("lambdagw_invoke_duration_seconds_count", (("route", "/special/"),))], 1
        )

    def test_label_sets_exist_before_traffic(self) -> None:
        """
        Each route's counters and histograms are there, at zero, before any request.
        """
        samples = self.scrape()
        for route in ("/lambda/", "/special/"):
            for cls in ("2xx", "4xx", "5xx", "client_gone"):
                self.assertEqual(requests(samples, route=route, function="", status_class=cls), 0)
            self.assertEqual(
                samples[("lambdagw_invoke_duration_seconds_count", (("route", route),))], 0
            )

    def test_names_not_invoked_are_not_labels(self) -> None:
        """
        Requests for names that fail routing count without a function label.
        """
        for path in ("/lambda/bad.name", "/lambda/fn%3Aprod", "/nowhere"):
            self.get(path)
        samples = self.scrape()
        functions = {dict(labels).get("function") for (name, labels) in samples}
        self.assertEqual(functions - {None, "", "hello", "special-fn"}, set())
        self.assertEqual(requests(samples, route="/lambda/", function="", status_class="4xx"), 2)
        self.assertEqual(requests(samples, route="", function="", status_class="4xx"), 1)

    def test_unknown_functions_are_other(self) -> None:
        """
        Names Lambda says do not exist count as "other", and as ResourceNotFoundException.
        """
        for n in range(3):
            self.get(f"/lambda/missing{n}")
        samples = self.scrape()
        self.assertEqual(
            requests(samples, route="/lambda/", function="other", status_class="5xx"), 3
        )
        self.assertEqual(
            samples[("lambdagw_invoke_errors_total", (("code", "ResourceNotFoundException"),))], 3
        )

    def test_invoke_errors_by_code(self) -> None:
        """
        Lambda's error codes, and the gateway's own timeout, are counted by code.
        """
        self.get("/lambda/busy")
        self.get("/lambda/busy")
        timing_out = self.get("/lambda/slow")
        self.gw.clock.advance(10)
        self.gw.flush()
        self.assertEqual(self.successResultOf(timing_out).code, 504)
        samples = self.scrape()
        self.assertEqual(
            samples[("lambdagw_invoke_errors_total", (("code", "TooManyRequestsException"),))], 2
        )
        self.assertEqual(samples[("lambdagw_invoke_errors_total", (("code", "InvokeTimeout"),))], 1)
        self.assertEqual(
            requests(samples, route="/lambda/", function="slow", status_class="5xx"), 1
        )
        self.assertEqual(
            samples[("lambdagw_invoke_duration_seconds_sum", (("route", "/lambda/"),))], 10
        )

    def test_in_flight(self) -> None:
        """
        The in-flight gauge is read from the resource when scraped.
        """
        waiting = self.get("/lambda/slow")
        self.assertEqual(self.scrape()[("lambdagw_in_flight", ())], 1)
        self.pending.callback({"done": True})
        self.gw.flush()
        self.successResultOf(waiting)
        self.assertEqual(self.scrape()[("lambdagw_in_flight", ())], 0)

    def test_own_registry(self) -> None:
        """
        Each gateway has its own registry; the global default one is untouched.
        """
        other = FakeAWSGateway(ROUTES, {"hello": ok})
        self.get("/lambda/hello")
        metrics, other_metrics = self.gw.gateway.metrics, other.gateway.metrics
        assert metrics is not None and other_metrics is not None
        self.assertIsNot(metrics.registry, other_metrics.registry)
        self.assertEqual(
            requests(
                parse(other_metrics.render().decode()),
                route="/lambda/",
                function="",
                status_class="2xx",
            ),
            0,
        )
        self.assertIsNone(REGISTRY.get_sample_value("lambdagw_in_flight"))

    def test_off(self) -> None:
        """
        With metrics_path = off there is no metrics page.
        """
        gw = FakeAWSGateway("[gateway]\nmetrics_path = off\n" + ROUTES)
        self.assertIsNone(gw.gateway.metrics)
        d = gw.client.get("http://gw/metrics")
        gw.flush()
        self.assertEqual(self.successResultOf(d).code, 404)


def invoked(function: str, error_code: str | None = None) -> Exchange:
    exchange = Exchange("r", 0.0, "127.0.0.1", "GET", f"/lambda/{function}")
    exchange.route, exchange.function, exchange.status = "/lambda/", function, 200
    exchange.invoke_started, exchange.finished = 0.0, 0.0
    exchange.error_code = error_code
    return exchange


class CardinalityTests(SynchronousTestCase):
    """
    Client-chosen names cannot grow the label sets without bound.
    """

    def test_function_cap(self) -> None:
        """
        Past max_functions distinct names, new names count as "other"; known ones keep theirs.
        """
        metrics = GatewayMetrics(["/lambda/"], max_functions=2)
        for name in ("a", "b", "c", "a", "d"):
            metrics(invoked(name))
        samples = parse(metrics.render().decode())
        counted = {
            dict(labels)["function"]: value
            for (name, labels), value in samples.items()
            if name == "lambdagw_requests_total" and value
        }
        self.assertEqual(counted, {"a": 2, "b": 1, "other": 2})

    def test_code_cap(self) -> None:
        """
        Past max_codes distinct error codes, new codes count as "other".
        """
        metrics = GatewayMetrics(max_codes=1)
        metrics(invoked("a", "ThrottlingException"))
        metrics(invoked("a", "SomethingNew"))
        samples = parse(metrics.render().decode())
        self.assertEqual(
            samples[("lambdagw_invoke_errors_total", (("code", "ThrottlingException"),))], 1
        )
        self.assertEqual(samples[("lambdagw_invoke_errors_total", (("code", "other"),))], 1)

    def test_status_classes(self) -> None:
        """
        Statuses map to their class; no status is client_gone.
        """
        self.assertEqual(
            [status_class(s) for s in (101, 200, 304, 404, 599, 0)],
            ["1xx", "2xx", "3xx", "4xx", "5xx", "client_gone"],
        )
