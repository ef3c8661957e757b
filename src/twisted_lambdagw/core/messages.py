"""
The two values every event format translates between.

A format turns an L{IncomingRequest} into the bytes of a Lambda event and the
bytes of the function's result back into a L{Reply}.  Both are plain frozen
values so formats stay pure functions that can be tested without a reactor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field

from .records import record

Headers = tuple[tuple[str, str], ...]
"""Header lines in the order they arrived: (name as sent, value)."""


class NotParsed:
    """
    The type of L{NOT_PARSED}.
    """

    def __repr__(self) -> str:
        return "NOT_PARSED"


NOT_PARSED = NotParsed()
"""
In place of a result's JSON document: the result was not parsed yet.

A backend that has parsed a result already (the AWS invoker checks that a
synchronous one is JSON) passes the document on with it, and the format
reads that instead of parsing the same bytes again.
"""


@record
class IncomingRequest:
    """
    One client request, as the gateway hands it to an event format.

    The headers are already cleaned: hop-by-hop headers are gone, and the
    gateway's own C{x-forwarded-*}, C{x-request-id} and C{header_upstream}
    values have replaced anything the client sent under those names.
    """

    request_id: str
    method: str
    raw_path: str
    """The full path as received, still percent-encoded, without the query."""
    path: str
    """The full path, percent-decoded."""
    function_raw_path: str
    """The path the function sees (below the prefix with strip_path_prefix), encoded."""
    function_path: str
    """The same path, percent-decoded."""
    raw_query: str
    """The query string as received, without the leading C{?}."""
    headers: Headers
    body: bytes
    protocol: str
    scheme: str
    host: str
    remote_addr: str
    server_port: int
    time: float
    """When the request arrived, in seconds since the epoch."""
    route_prefix: str
    function_name: str
    user: str | None = None
    authorizer: Mapping[str, object] | None = field(default=None, compare=False)
    """What the route's authorizer found, as HTTP APIs give it in payload 2.0:
    C{{"jwt": {"claims": ..., "scopes": ...}}} or C{{"lambda": context}}."""

    def header_values(self, name: str) -> list[str]:
        """
        All values of one header, compared case-insensitively.
        """
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def header(self, name: str) -> str | None:
        """
        The last value of one header, or None.
        """
        values = self.header_values(name)
        return values[-1] if values else None


@record
class Reply:
    """
    A complete, validated HTTP response taken from a function's result.

    Formats build a Reply only after checking every field, so the resource can
    write it without any further check and never half-writes a response.
    """

    status: int
    headers: Headers
    body: bytes
    reason: str | None = None
    """The status line's reason phrase; None for the standard one."""


def group_headers(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """
    Group header lines by lower-cased name, keeping the order of values.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped
