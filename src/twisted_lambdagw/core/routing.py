"""
From a request path to the function it invokes: pure functions, no I/O.

The semantics are caddy-awslambda's: the function is the first path segment
after the route's prefix, or the route's fixed C{single} function;
C{include}/C{exclude} globs judge the name from the path before
C{name_prepend}/C{name_append} are added to it (to a name from the path
only: the original also decorated C{single}, against its own documentation).
What else it got wrong is fixed here:
the longest prefix alone decides (no fall-through to a shorter one), a bare
C{*} means every name, a decoded name must match C{[A-Za-z0-9_-]{1,64}} so
no client can slip in a qualifier (C{:}), an ARN or a path, and
C{header_upstream} values keep their exact spacing.

Routes are chosen on the path in normal form (L{normal_path}), never on the
bytes as sent: C{/open/%61dmin} is C{/open/admin} (RFC 3986 section
6.2.2.2) and must meet that route's login, not a shorter prefix's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import unquote

from .config import RouteConfig
from .errors import BadRequest, NotFound
from .patterns import FUNCTION_NAME, accepts
from .records import record

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789ABCDEFabcdef")
_CONTROL_CHARACTERS = frozenset(chr(c) for c in [*range(0x20), 0x7F])


@record
class Target:
    """
    What a request resolves to: the function, and the path it is shown.
    """

    function: str
    """The name (or the configured ARN) to invoke."""
    path_name: str | None
    """The name as taken from the path, or None for a C{single} route."""
    qualifier: str | None
    function_raw_path: str
    """The percent-encoded path the function sees."""


def normal_path(raw_path: str) -> tuple[str, str]:
    """
    A request path (ASCII, as sent) in normal form, and that form decoded.

    Both decide alike which route and function a request reaches, whatever
    encoding the client chose for the same characters:

      - a percent-encoded unreserved character (C{A-Z a-z 0-9 - . _ ~}) is
        that character (C{%61} is C{a}); other escapes stay, upper-cased;
      - refused with L{BadRequest}, as ambiguous: a C{%} not followed by
        two hex digits; an encoded slash (C{%2F}), which would make a
        segment of one reading two of another; an empty segment (C{//}),
        which some servers behind a function merge and others keep (nginx
        merges, so C{/open//admin/} would be C{/open/admin/} to one and
        under C{/open/} to another); a C{.} or C{..} segment
        (C{%2e} included), which clients resolve before sending and which
        would otherwise climb out of a route's prefix; a decoded path that
        is not UTF-8 or holds a control character (C{%00}, C{%0a}...).

    The function is shown the normal form (C{rawPath} and the like) and its
    decoding: what it sees is what the gateway routed on.
    """
    if not raw_path.startswith("/"):
        # An asterisk or absolute form: no route covers it.
        raise NotFound("no route for this path", detail=f"no route for {raw_path[:100]!r}")
    if "%" in raw_path:
        raw_path = _decode_unreserved(raw_path)
    if "//" in raw_path:
        raise BadRequest("empty segment (//) in the request path")
    if "/." in raw_path and any(s in (".", "..") for s in raw_path.split("/")):
        raise BadRequest("dot segment in the request path")
    if "%" not in raw_path:
        path = raw_path
    else:
        try:
            path = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("request path is not valid UTF-8") from None
    if not _CONTROL_CHARACTERS.isdisjoint(path):
        raise BadRequest("request path holds a control character")
    return raw_path, path


def _decode_unreserved(raw_path: str) -> str:
    first, *escaped = raw_path.split("%")
    parts = [first]
    for piece in escaped:
        digits = piece[:2]
        if len(digits) != 2 or not _HEX.issuperset(digits):
            raise BadRequest("bad percent-encoding in the request path")
        char = chr(int(digits, 16))
        if char in _UNRESERVED:
            parts.append(char)
        elif char == "/":
            raise BadRequest("encoded slash (%2F) in the request path")
        else:
            parts += ("%", digits.upper())
        parts.append(piece[2:])
    return "".join(parts)


def prefix_matches(prefix: str, path: str) -> bool:
    """
    Whether a route prefix (ending in C{/}) covers the (decoded, normal) path.

    C{/lambda} itself belongs to the C{/lambda/} route.
    """
    return path.startswith(prefix) or path == prefix[:-1]


class RouteTable:
    """
    The routes, looked up by longest matching prefix.
    """

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self._routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def __iter__(self) -> Iterator[RouteConfig]:
        return iter(self._routes)

    def match(self, path: str) -> RouteConfig | None:
        """
        The route with the longest prefix covering the path, or None.

        C{path} is the decoded normal form (L{normal_path}): a prefix such as
        C{/a:b/} covers C{/a%3Ab/} too.  Only the path decides, so the
        route is known before the body is read and a name the route rejects
        never falls through to a shorter prefix.
        """
        for route in self._routes:
            if prefix_matches(route.prefix, path):
                return route
        return None


def resolve(route: RouteConfig, raw_path: str) -> Target:
    """
    Which function a path under C{route} invokes; raise L{NotFound} if none.

    C{raw_path} is the normal form (L{normal_path}) of a path whose decoding
    C{route} matched.  Its prefix may be spelled with escapes where the
    configured prefix is not, but it has as many segments (no C{%2F}): the
    rest is what follows them.
    """
    segments = route.prefix.count("/")
    parts = raw_path.split("/", segments)
    rest = parts[segments] if len(parts) > segments else ""
    if route.single is not None:
        function = route.single
        stripped = "/" + rest
        path_name = None
    else:
        segment, _, tail = rest.partition("/")
        try:
            name = unquote(segment, errors="strict") if "%" in segment else segment
        except UnicodeDecodeError:
            raise NotFound(detail=f"function name is not UTF-8: {segment!r}") from None
        if not FUNCTION_NAME.fullmatch(name):
            raise NotFound(detail=f"invalid function name {name!r}")
        # Most routes filter nothing: no call to learn it.
        if (route.include or route.exclude) and not accepts(name, route.include, route.exclude):
            raise NotFound(detail=f"function {name!r} rejected by include/exclude")
        function = route.name_prepend + name + route.name_append
        if not FUNCTION_NAME.fullmatch(function):
            raise NotFound(detail=f"function name {function!r} is over 64 characters")
        stripped = "/" + tail
        path_name = name
    return Target(
        function=function,
        path_name=path_name,
        qualifier=route.qualifier,
        function_raw_path=stripped if route.strip_path_prefix else raw_path,
    )
