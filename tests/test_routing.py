"""
Tests for L{twisted_lambdagw.core.routing}: caddy-awslambda's naming rules, with
the original's bugs (research/caddy-awslambda.md section 9) fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.config import RouteConfig
from twisted_lambdagw.core.config_reader import parse_config
from twisted_lambdagw.core.errors import NotFound
from twisted_lambdagw.core.patterns import (
    HeaderTemplate,
    accepts,
    glob_matches,
    parse_glob,
    parse_header_template,
)
from twisted_lambdagw.core.routing import RouteTable, Target, prefix_matches, resolve

ARN = "arn:aws:lambda:eu-central-1:123456789012:function:fixed"


def make_route(prefix: str = "/lambda/", **fields: Any) -> RouteConfig:
    """
    An AWS route with a region and the given options.
    """
    return RouteConfig(prefix=prefix, region="us-east-1", **fields)


def no_profile_region(profile: str | None, environ: Mapping[str, str]) -> str | None:
    return None


class ResolveTests(SynchronousTestCase):
    """
    L{resolve} takes the function from the path, or from single.
    """

    def assertNotFound(self, route: RouteConfig, raw_path: str) -> None:
        """
        The path resolves to no function: a 404.
        """
        error = self.assertRaises(NotFound, resolve, route, raw_path)
        self.assertEqual(error.status, 404)

    def test_firstSegment(self) -> None:
        """
        The function is the first path segment after the prefix.
        """
        self.assertEqual(
            resolve(make_route(), "/lambda/hello-world/abc/def"),
            Target(
                function="hello-world",
                path_name="hello-world",
                qualifier=None,
                function_raw_path="/lambda/hello-world/abc/def",
            ),
        )

    def test_nameOnly(self) -> None:
        """
        A path ending in the name, with or without a slash, names it.
        """
        self.assertEqual(resolve(make_route(), "/lambda/hello").function, "hello")
        self.assertEqual(resolve(make_route(), "/lambda/hello/").function, "hello")

    def test_percentEncodedName(self) -> None:
        """
        The name is percent-decoded before it is checked.
        """
        self.assertEqual(resolve(make_route(), "/lambda/hell%6F/x").function, "hello")

    def test_qualifier(self) -> None:
        """
        The route's qualifier goes with every call.
        """
        target = resolve(make_route(qualifier="prod"), "/lambda/hello")
        self.assertEqual((target.function, target.qualifier), ("hello", "prod"))

    def test_invalidNames(self) -> None:
        """
        Anything that is not [A-Za-z0-9_-]{1,64} after decoding is a 404.
        """
        # The original only refused '.' and the empty name, so a client could
        # pick a qualifier (':' or %3A) or pass an ARN or a path.
        for path in (
            "/lambda/",
            "/lambda",
            "/lambda//x",
            "/lambda/./x",
            "/lambda/../x",
            "/lambda/.",
            "/lambda/a.b",
            "/lambda/hello:1",
            "/lambda/hello%3A1",
            "/lambda/hello%3a1",
            "/lambda/a%2Fb",
            "/lambda/%2E%2E",
            "/lambda/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ax",
            "/lambda/a%20b",
            "/lambda/a+b",
            "/lambda/%00",
            "/lambda/caf%C3%A9",
            "/lambda/%ff",
            "/lambda/%C3%28",
            "/lambda/%",
            "/lambda/" + "a" * 65,
        ):
            self.assertNotFound(make_route(), path)

    def test_longestName(self) -> None:
        """
        A 64-character name is valid.
        """
        name = "a" * 64
        self.assertEqual(resolve(make_route(), f"/lambda/{name}/x").function, name)

    def test_affixes(self) -> None:
        """
        name_prepend and name_append decorate a name from the path.
        """
        route = make_route(name_prepend="acme-api-", name_append="-v2")
        target = resolve(route, "/lambda/foo/bar")
        self.assertEqual((target.function, target.path_name), ("acme-api-foo-v2", "foo"))

    def test_affixesTooLong(self) -> None:
        """
        A name that the affixes push over 64 characters is a 404.
        """
        route = make_route(name_prepend="p-", name_append="-s")
        self.assertEqual(resolve(route, "/lambda/" + "a" * 60).function, "p-" + "a" * 60 + "-s")
        self.assertNotFound(route, "/lambda/" + "a" * 61)

    def test_includeBeforeAffixes(self) -> None:
        """
        include/exclude judge the name from the path, before the affixes are added.
        """
        route = make_route(include=("hello*",), exclude=("*-internal",), name_prepend="acme-")
        self.assertEqual(resolve(route, "/lambda/hello").function, "acme-hello")
        self.assertNotFound(route, "/lambda/acme-hello")
        self.assertNotFound(route, "/lambda/hello-internal")
        route = make_route(exclude=("acme-*",), name_prepend="acme-")
        self.assertEqual(resolve(route, "/lambda/x").function, "acme-x")

    def test_globKinds(self) -> None:
        """
        Each glob kind admits its names through resolve, and no others.
        """
        for glob, yes, no in [
            ("exact", "exact", "exactly"),
            ("pre*", "prefix", "apre"),
            ("*fix", "suffix", "fixed"),
            ("*mid*", "amidst", "mi-d"),
            ("*", "anything", None),
        ]:
            route = make_route(include=(glob,))
            self.assertEqual(resolve(route, f"/lambda/{yes}").function, yes, glob)
            if no is not None:
                self.assertNotFound(route, f"/lambda/{no}")

    def test_exclude(self) -> None:
        """
        A name matching an exclude glob is a 404, even if included.
        """
        route = make_route(include=("api-*",), exclude=("*-admin", "api-debug"))
        self.assertEqual(resolve(route, "/lambda/api-users").function, "api-users")
        self.assertNotFound(route, "/lambda/api-admin")
        self.assertNotFound(route, "/lambda/api-debug")
        self.assertNotFound(route, "/lambda/users")

    def test_excludeAll(self) -> None:
        """
        exclude = * refuses every name (section 9.4: the original panicked on a bare *).
        """
        self.assertNotFound(make_route(exclude=("*",)), "/lambda/hello")

    def test_single(self) -> None:
        """
        single invokes one fixed function, whatever the path.
        """
        route = make_route(single="fixed", qualifier="live")
        for path in ("/lambda/", "/lambda", "/lambda/any/thing", "/lambda/a:b", "/lambda/%ff"):
            self.assertEqual(
                resolve(route, path),
                Target(function="fixed", path_name=None, qualifier="live", function_raw_path=path),
            )

    def test_singleARN(self) -> None:
        """
        single may be an ARN, invoked as given.
        """
        self.assertEqual(resolve(make_route(single=ARN), "/lambda/x").function, ARN)

    def test_singleIgnoresAffixes(self) -> None:
        """
        name_prepend/name_append do not touch single (section 9.2: the original applied them).
        """
        route = make_route(single="fixed", name_prepend="acme-", name_append="-v2")
        self.assertEqual(resolve(route, "/lambda/x").function, "fixed")

    def test_singleIgnoresGlobs(self) -> None:
        """
        include/exclude do not apply to single.
        """
        route = make_route(single="fixed", include=("nothing",), exclude=("*",))
        self.assertEqual(resolve(route, "/lambda/x").function, "fixed")

    def test_stripPathPrefix(self) -> None:
        """
        strip_path_prefix removes the prefix and the name segment.
        """
        route = make_route(prefix="/api/", strip_path_prefix=True)
        for path, stripped in [
            ("/api/hello/foo", "/foo"),
            ("/api/hello/foo/", "/foo/"),
            ("/api/hello", "/"),
            ("/api/hello/", "/"),
            ("/api/hello/a%2Fb/c%20d", "/a%2Fb/c%20d"),
        ]:
            target = resolve(route, path)
            self.assertEqual((target.function, target.function_raw_path), ("hello", stripped))

    def test_stripPathPrefixSingle(self) -> None:
        """
        With single, strip_path_prefix removes only the prefix.
        """
        route = make_route(prefix="/api/hello/", single="hello", strip_path_prefix=True)
        for path, stripped in [
            ("/api/hello/foo", "/foo"),
            ("/api/hello", "/"),
            ("/api/hello/", "/"),
            ("/api/hello/x%3Ay/z", "/x%3Ay/z"),
        ]:
            self.assertEqual(resolve(route, path).function_raw_path, stripped)
        route = make_route(prefix="/api/", single="fn", strip_path_prefix=True)
        self.assertEqual(resolve(route, "/api/hello/foo").function_raw_path, "/hello/foo")

    def test_noStripKeepsEncodedPath(self) -> None:
        """
        Without strip_path_prefix the function sees the whole path, still encoded.
        """
        path = "/lambda/hello/a%2Fb%20c"
        self.assertEqual(resolve(make_route(), path).function_raw_path, path)


class RouteTableTests(SynchronousTestCase):
    """
    L{RouteTable} picks the route by the longest prefix, from the path alone.
    """

    def test_trailingSlash(self) -> None:
        """
        /lambda belongs to the /lambda/ route; /lambdax does not.
        """
        route = make_route()
        table = RouteTable([route])
        self.assertIs(table.match("/lambda"), route)
        self.assertIs(table.match("/lambda/"), route)
        self.assertIs(table.match("/lambda/hello"), route)
        self.assertIsNone(table.match("/lambdax/hello"))
        self.assertIsNone(table.match("/lambd"))
        self.assertIsNone(table.match("/"))

    def test_configPrefixWithoutSlash(self) -> None:
        """
        A [route:/lambda] section serves /lambda/NAME, as [route:/lambda/] does.
        """
        for section in ("/lambda", "/lambda/"):
            config = parse_config(
                f"[aws]\nregion = us-east-1\n[route:{section}]\n",
                "gw.ini",
                {},
                no_profile_region,
            )
            table = RouteTable(config.routes)
            route = table.match("/lambda/hello/x")
            assert route is not None
            self.assertEqual(resolve(route, "/lambda/hello/x").function, "hello")
            self.assertIs(table.match("/lambda"), route)

    def test_rootPrefix(self) -> None:
        """
        A / route catches every path no longer prefix covers.
        """
        root, api = make_route("/"), make_route("/api/")
        table = RouteTable([root, api])
        self.assertIs(table.match("/hello"), root)
        self.assertIs(table.match("/api/hello"), api)
        self.assertEqual(resolve(root, "/hello/x").function, "hello")

    def test_longestPrefixWins(self) -> None:
        """
        The longest covering prefix wins, in whatever order routes are given.
        """
        short, long = make_route("/api/"), make_route("/api/admin/")
        for routes in ([short, long], [long, short]):
            table = RouteTable(routes)
            self.assertIs(table.match("/api/admin/x"), long)
            self.assertIs(table.match("/api/admin"), long)
            self.assertIs(table.match("/api/administrator"), short)
            self.assertIs(table.match("/api/x"), short)
            self.assertEqual(list(table), [long, short])

    def test_noFallThrough(self) -> None:
        """
        A longer prefix that rejects the name does not hand it to a shorter one (section 9.1).
        """
        # The original let the request fall through (and read the body once
        # per matching prefix); here the path alone picks the route, and that
        # route's answer is final.
        short = make_route("/api/")
        long = make_route("/api/admin/", include=("safe",))
        table = RouteTable([short, long])
        route = table.match("/api/admin/danger")
        self.assertIs(route, long)
        assert route is not None
        self.assertRaises(NotFound, resolve, route, "/api/admin/danger")
        self.assertEqual(resolve(route, "/api/admin/safe").function, "safe")
        self.assertEqual(resolve(short, "/api/admin/danger").function, "admin")

    def test_prefixMatches(self) -> None:
        """
        prefix_matches takes the prefix or the prefix without its slash.
        """
        self.assertTrue(prefix_matches("/a/b/", "/a/b/c"))
        self.assertTrue(prefix_matches("/a/b/", "/a/b"))
        self.assertFalse(prefix_matches("/a/b/", "/a/bc"))
        self.assertFalse(prefix_matches("/a/b/", "/A/b/c"))


class GlobTests(SynchronousTestCase):
    """
    include/exclude globs: exact, prefix*, *suffix, *sub* and a bare *.
    """

    def test_matches(self) -> None:
        """
        Each kind of glob matches what it says and nothing else.
        """
        for glob, name, expected in [
            ("abc", "abc", True),
            ("abc", "abcd", False),
            ("abc", "xabc", False),
            ("abc*", "abc", True),
            ("abc*", "abcdef", True),
            ("abc*", "xabc", False),
            ("*abc", "abc", True),
            ("*abc", "xyzabc", True),
            ("*abc", "abcx", False),
            ("*abc*", "abc", True),
            ("*abc*", "xabcx", True),
            ("*abc*", "ab-c", False),
            ("*", "anything", True),
            ("*", "a", True),
        ]:
            self.assertEqual(glob_matches(glob, name), expected, (glob, name))

    def test_accepts(self) -> None:
        """
        With includes, one must match; any matching exclude refuses.
        """
        self.assertTrue(accepts("x", [], []))
        self.assertTrue(accepts("hello", ["nope", "hel*"], []))
        self.assertFalse(accepts("hello", ["nope"], []))
        self.assertFalse(accepts("hello", ["*"], ["*lo"]))
        self.assertTrue(accepts("hello", ["*"], ["*lx"]))

    def test_parseGlob(self) -> None:
        """
        Valid globs pass unchanged; a '*' inside a glob is refused.
        """
        for glob in ("abc", "abc*", "*abc", "*abc*", "*", "a_b-9"):
            self.assertEqual(parse_glob(glob), glob)
        for glob in ("a*b", "**", "***", "*a*b*", "a.b", "", "a:b", "a/b"):
            self.assertRaises(ValueError, parse_glob, glob)


class HeaderTemplateTests(SynchronousTestCase):
    """
    header_upstream lines: parsed once, expanded per request.
    """

    VALUES = {
        "remote": "203.0.113.9",
        "host": "example.com:8080",
        "scheme": "https",
        "method": "POST",
        "path": "/lambda/hello/a b",
        "uri": "/lambda/hello/a%20b?x=1",
        "request_id": "req-42",
    }

    def test_everyPlaceholder(self) -> None:
        """
        Every placeholder is replaced by its value.
        """
        template = parse_header_template(
            "X-All {remote}|{host}|{scheme}|{method}|{path}|{uri}|{request_id}"
        )
        self.assertEqual(template.name, "X-All")
        self.assertEqual(
            template.expand(self.VALUES),
            "203.0.113.9|example.com:8080|https|POST|/lambda/hello/a b"
            "|/lambda/hello/a%20b?x=1|req-42",
        )

    def test_spacingKept(self) -> None:
        """
        The value keeps its spaces and tabs exactly (section 9.6: the original re-joined tokens).
        """
        template = parse_header_template("X-Note    a  {remote}\t b   c   ")
        self.assertEqual(template, HeaderTemplate("X-Note", "a  {remote}\t b   c"))
        self.assertEqual(template.expand(self.VALUES), "a  203.0.113.9\t b   c")

    def test_tabSeparator(self) -> None:
        """
        A tab may separate the name from the value.
        """
        self.assertEqual(
            parse_header_template("X-Real-IP\t{remote}"), HeaderTemplate("X-Real-IP", "{remote}")
        )

    def test_literalText(self) -> None:
        """
        Values are inserted literally, and unknown brace text stays as it is.
        """
        template = parse_header_template("X-Raw {Remote} {} {path}")
        self.assertEqual(
            template.expand({**self.VALUES, "path": r"\1 \g<0> {remote}"}),
            r"{Remote} {} \1 \g<0> {remote}",
        )

    def test_badName(self) -> None:
        """
        A header name that is not an HTTP token is refused.
        """
        for line in ("X@Y v", "X:Y v", "X(Y) v", "Ä v", "  "):
            error = self.assertRaises(ValueError, parse_header_template, line)
            self.assertIn("not a header name", str(error))

    def test_noValue(self) -> None:
        """
        A name without a value is refused.
        """
        self.assertRaises(ValueError, parse_header_template, "X-Alone")
        self.assertRaises(ValueError, parse_header_template, "X-Alone   ")

    def test_controlCharacter(self) -> None:
        """
        A value holding a NUL or a line break is refused.
        """
        for line in ("X-A a\x00b", "X-A a\rb", "X-A a\nb"):
            self.assertRaises(ValueError, parse_header_template, line)

    def test_unknownPlaceholder(self) -> None:
        """
        A placeholder the gateway does not fill is refused, naming it.
        """
        for placeholder in ("hostonly", "proto", "remote_addr"):
            error = self.assertRaises(ValueError, parse_header_template, f"X-A {{{placeholder}}}")
            self.assertIn(f"{{{placeholder}}}", str(error))
