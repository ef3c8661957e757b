"""
From a request path to the function it invokes: pure functions, no I/O.

The semantics are caddy-awslambda's: the function is the first path segment
after the route's prefix, or the route's fixed ``single`` function;
``include``/``exclude`` globs judge the name from the path before
``name_prepend``/``name_append`` are added to it (to a name from the path
only: the original also decorated ``single``, against its own documentation).
What else it got wrong is fixed here:
the longest prefix alone decides (no fall-through to a shorter one), a bare
``*`` means every name, a decoded name must match ``[A-Za-z0-9_-]{1,64}`` so
no client can slip in a qualifier (``:``), an ARN or a path, and
``header_upstream`` values keep their exact spacing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

from .config import RouteConfig
from .errors import NotFound
from .patterns import accepts
from .records import record

FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@record
class Target:
    """
    What a request resolves to: the function, and the path it is shown.
    """

    function: str
    """The name (or the configured ARN) to invoke."""
    path_name: str | None
    """The name as taken from the path, or None for a ``single`` route."""
    qualifier: str | None
    function_raw_path: str
    """The percent-encoded path the function sees."""


def prefix_matches(prefix: str, raw_path: str) -> bool:
    """
    Whether a route prefix (ending in ``/``) covers the path.

    ``/lambda`` itself belongs to the ``/lambda/`` route.
    """
    return raw_path.startswith(prefix) or raw_path == prefix[:-1]


class RouteTable:
    """
    The routes, looked up by longest matching prefix.
    """

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self._routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def __iter__(self) -> Iterator[RouteConfig]:
        return iter(self._routes)

    def match(self, raw_path: str) -> RouteConfig | None:
        """
        The route with the longest prefix covering the path, or None.

        Only the path decides, so the route is known before the body is read
        and a name the route rejects never falls through to a shorter prefix.
        """
        for route in self._routes:
            if prefix_matches(route.prefix, raw_path):
                return route
        return None


def resolve(route: RouteConfig, raw_path: str) -> Target:
    """
    Which function a path under ``route`` invokes; raise L{NotFound} if none.
    """
    rest = raw_path[len(route.prefix) :] if raw_path.startswith(route.prefix) else ""
    if route.single is not None:
        function = route.single
        stripped = "/" + rest
        path_name = None
    else:
        segment, _, tail = rest.partition("/")
        try:
            name = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise NotFound(detail=f"function name is not UTF-8: {segment!r}") from None
        if not FUNCTION_NAME.fullmatch(name):
            raise NotFound(detail=f"invalid function name {name!r}")
        if not accepts(name, route.include, route.exclude):
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
