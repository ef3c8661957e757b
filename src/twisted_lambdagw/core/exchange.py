"""
The record of one request, filled in as it is served.

The resource keeps one L{Exchange} per request and hands it, finished, to
its observers: the access log and the metrics read the same facts, so they
can never disagree about what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Exchange:
    request_id: str
    started: float
    """Clock time the request started being served, in seconds."""
    remote: str
    method: str
    path: str
    route: str | None = None
    function: str | None = None
    qualifier: str | None = None
    user: str | None = None
    authorizer: str | None = None
    """The route's authorizer's outcome: allowed, missing, invalid, denied or failed."""
    authorizer_cache: str | None = None
    """A Lambda authorizer's result cache: hit or miss (None without a cache)."""
    status: int = 0
    """The status written, or 0 when the client went away first."""
    bytes_out: int = 0
    finished: float | None = None
    invoke_started: float | None = None
    invoke_finished: float | None = None
    aws_request_id: str | None = None
    executed_version: str | None = None
    function_error: str | None = None
    error: str | None = None
    """The gateway's error message, for gateway-side failures."""
    error_code: str | None = None
    """
    Why the invocation failed: the AWS error code when Lambda refused the
    call, C{InvokeTimeout} past the route's timeout, C{InvokeFailed} when no
    answer came (connection or credentials).
    """
    outcome: str = "served"
    """served, error, or client_gone."""
    limited: str | None = None
    """
    Refused by a rate limit or quota: C{KIND:WHICH}, the key's kind (route,
    client, user, header) and C{rate} or C{quota}.
    """
    first_byte: float | None = None
    """Clock time the status line and headers were written, or None if never."""
    stream_outcome: str | None = None
    """
    How a streamed invocation ended (None on routes without C{stream}):
    C{complete}; C{function_error} (the function failed); C{truncated}
    (the stream from Lambda broke); C{malformed} (a bad prelude);
    C{timeout} (no head within the route's timeout); C{idle_timeout} (no
    data within C{stream_idle_timeout}); C{client_gone}; C{refused}
    (Lambda refused the call before streaming).  When C{first_byte} is set
    and this is not C{complete}, the client saw a truncated response.
    """

    @property
    def duration(self) -> float | None:
        if self.finished is None:
            return None
        return self.finished - self.started

    @property
    def time_to_first_byte(self) -> float | None:
        if self.first_byte is None:
            return None
        return self.first_byte - self.started

    @property
    def invoke_duration(self) -> float | None:
        if self.invoke_started is None or self.invoke_finished is None:
            return None
        return self.invoke_finished - self.invoke_started


ExchangeObserver = Callable[[Exchange], None]
"""Called once per request, after the response is written (or abandoned)."""
