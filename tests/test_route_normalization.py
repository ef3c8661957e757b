"""
No spelling of a path reaches a function through a route its plain spelling
would not reach (issue: ``/open/%61dmin`` invoked ``admin`` without a login).

Property tests (hypothesis, derandomized) over generated route tables and
paths whose characters are percent-encoded at random, first on the routing
functions the resource runs, then through the real resource with basic auth
on some prefixes; and the reported bytes on a real loopback socket.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import ClientFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_lambdagw.core.config import RouteConfig
from twisted_lambdagw.core.errors import GatewayError
from twisted_lambdagw.core.formats import get_format
from twisted_lambdagw.core.routing import RouteTable, normal_path, resolve
from twisted_lambdagw.policies.auth import basic_authenticator
from twisted_lambdagw.policies.build import PolicyServices, build_chain
from twisted_lambdagw.server.resource import Binding, GatewayResource
from twisted_lambdagw.server.site import GatewaySite
from twisted_lambdagw.testing import FakeContext, InProcessInvoker

from .auth_fixtures import ALICE_HASH, InlineThreads, write
from .gateway_fixtures import config_from
from .loopback import RawClient, real_reactor
from .scratch import temp_path
from .site_fixtures import SiteUnderTest

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
SUB_DELIMS = "!$&'()*+,;=:@"
"""Characters a path may hold as they are (RFC 3986 pchar) besides the unreserved."""

SEGMENTS = ["open", "admin", "a:b", "api", "fn", "x", "é", "v1", "A", "a~b", ".", ".."]
NAMES = ["open", "admin", "api", "fn", "x", "v1", "A", "fixed"]


def plain(path: str) -> str:
    """
    The path as a client sends it with the fewest escapes: only what may
    not appear raw (here, non-ASCII) is encoded.
    """
    return "".join(c if c.isascii() else _escape(c, upper=True) for c in path)


def _escape(char: str, upper: bool) -> str:
    text = "".join(f"%{b:02X}" for b in char.encode("utf-8"))
    return text if upper else text.lower()


@st.composite
def spellings(draw: st.DrawFn, path: str, slashes: bool = False) -> str:
    """
    C{path} with each character kept or percent-encoded at random (hex in
    either case); with C{slashes}, a ``/`` may be encoded too.
    """
    out = []
    for char in path:
        if char == "/" and not slashes:
            out.append(char)
        elif not char.isascii() or draw(st.booleans()):
            out.append(_escape(char, upper=draw(st.booleans())))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def route_tables(draw: st.DrawFn) -> list[RouteConfig]:
    prefixes = draw(
        st.lists(
            st.lists(st.sampled_from(SEGMENTS[:-2]), min_size=0, max_size=2).map(
                lambda segments: "/" + "".join(s + "/" for s in segments)
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    return [
        RouteConfig(
            prefix=prefix,
            auth=draw(st.sampled_from(["none", "basic"])),
            single=draw(st.sampled_from([None, None, "fixed"])),
            strip_path_prefix=draw(st.booleans()),
            region="us-east-1",
        )
        for prefix in prefixes
    ]


paths = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=4).map(
    lambda segments: "/" + "/".join(segments)
)


def outcome(table: RouteTable, raw_path: str) -> tuple[Any, ...]:
    """
    What the resource's routing makes of a path: the route, its auth and
    the function, or the refusal's status.
    """
    try:
        normal, decoded = normal_path(raw_path)
        route = table.match(decoded)
        if route is None:
            return ("no route",)
        target = resolve(route, normal)
    except GatewayError as e:
        return ("refused", e.status)
    # Escapes of reserved characters are kept for the function (``%3A`` is
    # not ``:`` to every reader), so its path is compared decoded.
    return (route.prefix, route.auth, target.function, unquote(target.function_raw_path))


def refused(result: tuple[Any, ...]) -> bool:
    return result[0] in ("refused", "no route")


class RoutingPropertyTests(SynchronousTestCase):
    """
    The routing functions, as L{GatewayResource} runs them.
    """

    @settings(derandomize=True, max_examples=500)
    @given(st.data(), route_tables(), paths)
    def test_encodings_reach_what_the_plain_path_reaches(
        self, data: st.DataObject, routes: list[RouteConfig], path: str
    ) -> None:
        """
        Any spelling of a path, ``/`` included, reaches the route, auth and
        function the plain spelling reaches, or is refused.
        """
        table = RouteTable(routes)
        expected = outcome(table, plain(path))
        encoded = data.draw(spellings(path, slashes=True))
        got = outcome(table, encoded)
        if not refused(got):
            self.assertEqual(got, expected, encoded)

    @settings(derandomize=True, max_examples=500)
    @given(st.data(), route_tables(), paths)
    def test_encoded_unreserved_characters_are_the_same(
        self, data: st.DataObject, routes: list[RouteConfig], path: str
    ) -> None:
        """
        Escapes of characters that need none (``%61`` for ``a``, ``%3A`` for
        ``:``) change nothing: not a refusal, the same route and function.
        """
        table = RouteTable(routes)
        encoded = data.draw(spellings(path))
        self.assertEqual(outcome(table, encoded), outcome(table, plain(path)), encoded)

    def test_ambiguous_paths_are_refused(self) -> None:
        """
        Encoded slashes, dot segments (encoded or not), empty segments and bad
        escapes are a 400; a target that is not a path finds no route.
        """
        for raw in [
            "/open%2Fadmin/x",
            "/open%2fadmin",
            "/open/../admin",
            "/open/%2e%2E/admin",
            "/open/./admin",
            "/open/%2E",
            "/open//admin",
            "//open",
            "/open/%zzadmin",
            "/open/admin%4",
            "/open/%",
            "/open/%ff",
            "/open/%00",
            "/open/a%0Ab",
        ]:
            with self.assertRaises(GatewayError) as caught:
                normal_path(raw)
            self.assertEqual(caught.exception.status, 400, raw)
        for raw in ["*", "http://gw/open/"]:
            with self.assertRaises(GatewayError) as caught:
                normal_path(raw)
            self.assertEqual(caught.exception.status, 404, raw)

    def test_normal_form(self) -> None:
        """
        Unreserved characters are decoded, other escapes upper-cased and kept.
        """
        self.assertEqual(
            normal_path("/open/%61dm%69n/%7e%2D%5f%2e/a%3ab/%c3%a9"),
            ("/open/admin/~-_./a%3Ab/%C3%A9", "/open/admin/~-_./a:b/é"),
        )
        self.assertEqual(normal_path("/plain/path"), ("/plain/path", "/plain/path"))


OPEN_AND_ADMIN = """
[aws]
region = us-east-1

[auth]
realm = gw
users_file = {users}

[route:/open/]
auth = none

[route:/open/admin/]
single = admin
"""


def reply(event: Any, context: FakeContext) -> Any:
    return {"type": "HTTPJSON-REP", "meta": {"status": 200}, "body": context.function_name}


class ResourcePropertyTests(SynchronousTestCase):
    """
    Through the real Site and resource, basic auth on some prefixes.
    """

    def setUp(self) -> None:
        self.users = temp_path(self)
        write(self.users, f"alice:{ALICE_HASH}\n")

    def answer(self, site: SiteUnderTest, target: str) -> tuple[int, list[str]]:
        before = len(site.invoker.calls)
        connection = site.connect()
        connection.send(b"GET %s HTTP/1.1\r\nHost: gw\r\n\r\n" % target.encode("ascii"))
        [status] = connection.statuses()
        return status, [call.function for call in site.invoker.calls[before:]]

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(st.data(), route_tables(), paths)
    def test_no_encoding_skips_a_login(
        self, data: st.DataObject, routes: list[RouteConfig], path: str
    ) -> None:
        """
        Without credentials, a spelled-out path gets the plain path's status
        and invokes the same functions, or is refused (400 or 404) and
        invokes nothing.
        """
        text = "[aws]\nregion = us-east-1\n[auth]\nrealm = gw\nusers_file = " + self.users + "\n"
        for route in routes:
            text += f"[route:{route.prefix}]\nauth = {route.auth}\n"
            if route.single is not None:
                text += f"single = {route.single}\n"
        site = SiteUnderTest(
            {name: reply for name in NAMES},
            config=config_from(text),
            authenticator=basic_authenticator(self.users, "gw", InlineThreads()),
        )
        self.addCleanup(site.stop)
        expected = self.answer(site, plain(path))
        encoded = data.draw(spellings(path, slashes=True))
        got = self.answer(site, encoded)
        if got != expected:
            self.assertIn(got[0], (400, 404), encoded)
            self.assertEqual(got[1], [], encoded)

    def test_the_reported_bypass(self) -> None:
        """
        The issue's requests, on the memory transport: 401, nothing invoked.
        """
        site = SiteUnderTest(
            {"admin": reply, "open": reply},
            config=config_from(OPEN_AND_ADMIN.format(users=self.users)),
            authenticator=basic_authenticator(self.users, "gw", InlineThreads()),
        )
        self.addCleanup(site.stop)
        for target in ["/open/%61dmin", "/open/adm%69n/x", "/open/admin", "/%6fpen/admin/"]:
            self.assertEqual(self.answer(site, target), (401, []), target)


class BypassLoopbackTests(TestCase):
    """
    The reported bytes, on a real socket, against the real Site.
    """

    async def test_encoded_letters_meet_the_login(self) -> None:
        """
        ``GET /open/%61dmin`` and ``GET /open/adm%69n/x`` without credentials
        get 401 with the JSON error, and ``admin`` is never invoked.
        """
        reactor = real_reactor()
        users = temp_path(self)
        write(users, f"alice:{ALICE_HASH}\n")
        config = config_from(OPEN_AND_ADMIN.format(users=users))
        authenticator = basic_authenticator(users, "gw", InlineThreads())
        invoker = InProcessInvoker({"admin": reply, "open": reply})
        services = PolicyServices(clock=reactor, authenticator=authenticator)
        bindings = [
            Binding(
                route,
                invoker,
                get_format(route.format),
                build_chain(route, config, services),
            )
            for route in config.routes
        ]
        site = GatewaySite(GatewayResource(bindings, reactor), reactor=reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for target in [b"/open/%61dmin", b"/open/adm%69n/x"]:
            client = RawClient(
                b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
            )
            factory = ClientFactory()
            factory.protocol = lambda: client  # noqa: B023 (used before the loop moves on)
            reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
            answer = await client.done
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 401 "), answer)
            self.assertIn(b"\r\nx-request-id: ", head.lower())
            self.assertIn(b'"error"', body)
        self.assertEqual(invoker.calls, [])
