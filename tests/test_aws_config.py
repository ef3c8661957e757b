"""
The AWS keys of the config ([aws] and the route keys), and where they send
calls: regions, partitions, FIPS and dual-stack endpoints, the shared pool.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import Config, ConfigError
from twisted_lambdagw.daemon.tap import Options
from twisted_lambdagw.gateway import Gateway, check_aws_routes
from twisted_lambdagw.invokers.aws.endpoints import (
    EndpointError,
    EndpointSpec,
    partition_of,
    resolve_endpoint,
)
from twisted_lambdagw.invokers.base import InvokeCall
from twisted_lambdagw.testing import FakeLambda

from .gateway_fixtures import config_from
from .process_fixtures import temp_dir, write_config

KEYS = "[aws]\naccess_key_id = AKIDEXAMPLE\nsecret_access_key = secret\n"
ROLE = "arn:aws:iam::123456789012:role/gateway-invoker"


def config_error(text: str) -> str:
    try:
        config_from(text)
    except ConfigError as e:
        return str(e)
    raise AssertionError("no ConfigError")


class AWSKeysTests(SynchronousTestCase):
    """
    The new [aws] and route keys: values, defaults, inheritance, refusals.
    """

    def test_defaults(self) -> None:
        """
        No role, no FIPS, no dual-stack, 1000 connections per host, 10s to connect.
        """
        config = config_from(KEYS + "region = us-east-1\n[route:/a/]\n")
        aws, [route] = config.aws, config.routes
        self.assertEqual((aws.max_connections, aws.connect_timeout), (1000, 10.0))
        self.assertEqual((aws.role_arn, route.role_arn), (None, None))
        self.assertFalse(route.use_fips_endpoint or route.use_dualstack_endpoint)
        self.assertEqual((route.retry_idempotent, route.log_type), (False, "None"))

    def test_values(self) -> None:
        """
        Every key read with its type.
        """
        config = config_from(
            "[aws]\nregion = us-east-1\nmax_connections = 64\nconnect_timeout = 2500ms\n"
            f"role_arn = {ROLE}\nexternal_id = abc:123\nrole_session_name = gw@host\n"
            "use_fips_endpoint = yes\n"
            "[route:/a/]\nretry_idempotent = on\nlog_type = Tail\nuse_fips_endpoint = no\n"
            "use_dualstack_endpoint = true\n"
        )
        aws, [route] = config.aws, config.routes
        self.assertEqual((aws.max_connections, aws.connect_timeout), (64, 2.5))
        self.assertEqual(
            (aws.role_arn, aws.external_id, aws.role_session_name), (ROLE, "abc:123", "gw@host")
        )
        self.assertEqual(
            (route.role_arn, route.external_id, route.role_session_name),
            (ROLE, "abc:123", "gw@host"),
        )
        self.assertEqual((route.use_fips_endpoint, route.use_dualstack_endpoint), (False, True))
        self.assertEqual((route.retry_idempotent, route.log_type), (True, "Tail"))

    def test_route_inherits_switches(self) -> None:
        """
        A route without its own switches takes [aws]'s.
        """
        config = config_from("[aws]\nregion = us-east-1\nuse_fips_endpoint = 1\n[route:/a/]\n")
        self.assertTrue(config.routes[0].use_fips_endpoint)

    def test_refusals(self) -> None:
        """
        Bad values name their section and key, in one line.
        """
        region = "[aws]\nregion = us-east-1\n"
        cases = [
            ("[aws]\nrole_arn = arn:aws:iam::1:user/x\n[route:/a/]\n", "[aws] role_arn"),
            ("[aws]\nexternal_id = abc\n[route:/a/]\n", "[aws] external_id: needs role_arn"),
            (
                f"[aws]\nrole_arn = {ROLE}\nrole_session_name = has space\n[route:/a/]\n",
                "[aws] role_session_name",
            ),
            (
                f"[aws]\nrole_arn = {ROLE}\nexternal_id = x\n[route:/a/]\n",
                "[aws] external_id: must be 2-1224",
            ),
            (
                "[aws]\nendpoint_url = http://127.0.0.1:9\nuse_fips_endpoint = yes\n[route:/a/]\n",
                "[aws] use_fips_endpoint: has no effect with endpoint_url",
            ),
            (
                "[aws]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:9\n"
                "[route:/a/]\nuse_dualstack_endpoint = yes\n",
                "[route:/a/] use_dualstack_endpoint: has no effect",
            ),
            (region + "max_connections = 0\n[route:/a/]\n", "[aws] max_connections"),
            (region + "connect_timeout = soon\n[route:/a/]\n", "[aws] connect_timeout"),
            (region + "[route:/a/]\nlog_type = Everything\n", "[route:/a/] log_type"),
            (
                region + "[route:/a/]\nlog_type = Tail\ninvocation_type = Event\n",
                "[route:/a/] log_type: Lambda returns no log",
            ),
            (region + "[route:/a/]\nretry_idempotent = maybe\n", "[route:/a/] retry_idempotent"),
            (region + "[route:/a/]\nexternal_id = abc\n", "[route:/a/] external_id"),
        ]
        for text, expected in cases:
            message = config_error(text)
            self.assertIn(f"test.ini: {expected}", message)
            self.assertNotIn("\n", message)


class EndpointTests(SynchronousTestCase):
    """
    Endpoints come from botocore's rules, variants only where its data lists them.
    """

    def test_partitions(self) -> None:
        """
        Each partition's own DNS suffix.
        """
        for region, url in [
            ("us-west-2", "https://lambda.us-west-2.amazonaws.com"),
            ("cn-north-1", "https://lambda.cn-north-1.amazonaws.com.cn"),
            ("us-gov-west-1", "https://lambda.us-gov-west-1.amazonaws.com"),
            ("us-iso-east-1", "https://lambda.us-iso-east-1.c2s.ic.gov"),
            ("eusc-de-east-1", "https://lambda.eusc-de-east-1.amazonaws.eu"),
        ]:
            self.assertEqual(resolve_endpoint(EndpointSpec(region)), url)

    def test_partition_of(self) -> None:
        """
        Listed regions and region patterns; None for nonsense.
        """
        self.assertEqual(partition_of("cn-northwest-1"), "aws-cn")
        self.assertEqual(partition_of("us-gov-east-1"), "aws-us-gov")
        self.assertEqual(partition_of("eu-west-9"), "aws")
        self.assertEqual(partition_of("us-isob-east-1"), "aws-iso-b")
        self.assertIsNone(partition_of("xx-nowhere-1"))

    def test_listed_variants(self) -> None:
        """
        FIPS in the US and GovCloud regions, dual-stack where listed.
        """
        for spec, url in [
            (EndpointSpec("us-east-1", fips=True), "https://lambda-fips.us-east-1.amazonaws.com"),
            (
                EndpointSpec("us-gov-west-1", fips=True),
                "https://lambda-fips.us-gov-west-1.amazonaws.com",
            ),
            (EndpointSpec("eu-west-1", dualstack=True), "https://lambda.eu-west-1.api.aws"),
            (
                EndpointSpec("cn-north-1", dualstack=True),
                "https://lambda.cn-north-1.api.amazonwebservices.com.cn",
            ),
        ]:
            self.assertEqual(resolve_endpoint(spec), url)

    def test_unlisted_variants(self) -> None:
        """
        botocore's rules would invent these hosts; the gateway refuses them.
        """
        for spec, message in [
            (EndpointSpec("eu-west-1", fips=True), "no FIPS endpoint in eu-west-1"),
            (EndpointSpec("cn-north-1", fips=True), "no FIPS endpoint in cn-north-1"),
            (EndpointSpec("us-iso-east-1", dualstack=True), "no dual-stack endpoint"),
            (
                EndpointSpec("us-east-1", fips=True, dualstack=True),
                "no FIPS dual-stack endpoint in us-east-1",
            ),
        ]:
            with self.assertRaises(EndpointError) as raised:
                resolve_endpoint(spec)
            self.assertIn(message, str(raised.exception))

    def test_endpoint_url_wins(self) -> None:
        """
        endpoint_url is used as it is.
        """
        self.assertEqual(
            resolve_endpoint(EndpointSpec("us-east-1", "http://127.0.0.1:3002/")),
            "http://127.0.0.1:3002",
        )

    def test_config_errors(self) -> None:
        """
        At assembly an unlisted variant or a mismatched ARN is one config line.
        """
        for text, expected in [
            (
                KEYS + "region = eu-west-1\n[route:/a/]\nuse_fips_endpoint = yes\n",
                "test.ini: [route:/a/] use_fips_endpoint: Lambda has no FIPS endpoint in eu-west-1",
            ),
            (
                KEYS + "[route:/a/]\nsingle = arn:aws:lambda:cn-north-1:123456789012:function:f\n",
                "test.ini: [route:/a/] single: region cn-north-1 is in partition aws-cn, not aws",
            ),
        ]:
            with self.assertRaises(ConfigError) as raised:
                check_aws_routes(config_from(text))
            self.assertEqual(str(raised.exception), expected)

    def test_options_refuse_unlisted_fips(self) -> None:
        """
        twistd stops at option parsing for an endpoint that cannot exist.
        """
        path = write_config(
            temp_dir(self), KEYS + "region = ap-south-1\nuse_fips_endpoint = yes\n[route:/a/]\n"
        )
        options = Options(reactor=MemoryReactorClock())
        with self.assertRaises(usage.UsageError) as raised:
            options.parseOptions(["--config", str(path)])
        self.assertIn("[route:/a/] use_fips_endpoint", str(raised.exception))


def invoke_through(config: Config, prefix: str = "/a/") -> Any:
    """
    Invoke through the gateway's invoker for a route, with real endpoint resolution.

    Returns what the fake Lambda API received.
    """
    api = FakeLambda({"f": lambda event, context: {}})
    stub = StubTreq(api)
    clock = Clock()
    clock.advance(1_700_000_000)
    gateway = Gateway(config, clock, client=stub)
    [binding] = [b for b in gateway.bindings if b.route.prefix == prefix]
    function = binding.route.single or "f"
    d = Deferred.fromCoroutine(binding.invoker.invoke(InvokeCall(function, b"{}")))
    stub.flush()
    assert d.called
    [call] = api.calls
    return call


class RegionRoutingTests(SynchronousTestCase):
    """
    Each route's calls go to its region's endpoint, signed for that region.
    """

    def test_arn_in_single_uses_its_region_and_partition(self) -> None:
        """
        An aws-cn ARN is sent to the .com.cn endpoint and signed for cn-north-1.
        """
        arn = "arn:aws-cn:lambda:cn-north-1:123456789012:function:f"
        call = invoke_through(
            config_from(KEYS + f"region = us-east-1\n[route:/a/]\nsingle = {arn}\n")
        )
        self.assertEqual(call.headers["host"], "lambda.cn-north-1.amazonaws.com.cn")
        self.assertIn("/cn-north-1/lambda/aws4_request", call.headers["authorization"])
        self.assertEqual(call.function, arn)

    def test_route_region_and_fips(self) -> None:
        """
        A route's aws_region and use_fips_endpoint decide host and signing region.
        """
        config = config_from(
            KEYS + "region = eu-west-1\n[route:/a/]\naws_region = us-west-2\n"
            "use_fips_endpoint = yes\n"
        )
        call = invoke_through(config)
        self.assertEqual(call.headers["host"], "lambda-fips.us-west-2.amazonaws.com")
        self.assertIn("/us-west-2/lambda/aws4_request", call.headers["authorization"])

    def test_gov_cloud_dualstack(self) -> None:
        """
        GovCloud's dual-stack endpoint, signed for its region.
        """
        config = config_from(
            KEYS + "region = us-gov-east-1\nuse_dualstack_endpoint = yes\n[route:/a/]\n"
        )
        call = invoke_through(config)
        self.assertEqual(call.headers["host"], "lambda.us-gov-east-1.api.aws")
        self.assertIn("/us-gov-east-1/lambda/aws4_request", call.headers["authorization"])


class PoolTests(SynchronousTestCase):
    """
    One pool for every route, sized by [aws].
    """

    def test_sized_by_config(self) -> None:
        """
        max_connections bounds the kept connections per host; connect_timeout reaches connects.
        """
        reactor = MemoryReactorClock()
        config = config_from(
            KEYS + "region = us-east-1\nendpoint_url = http://127.0.0.1:9\n"
            "max_connections = 7\nconnect_timeout = 3s\n[route:/a/]\n[route:/b/]\n"
        )
        gateway = Gateway(config, reactor)
        assert gateway.pool is not None
        self.assertEqual(gateway.pool.max_idle_per_host, 7)
        for binding in gateway.bindings:
            Deferred.fromCoroutine(binding.invoker.invoke(InvokeCall("f", b"{}")))
        self.assertEqual(len(reactor.tcpClients), 2)
        self.assertEqual({client[3] for client in reactor.tcpClients}, {3.0})
        invokers = [binding.invoker for binding in gateway.bindings]
        self.assertIs(invokers[0]._client, invokers[1]._client)  # type: ignore[attr-defined]
