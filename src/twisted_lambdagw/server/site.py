"""
The gateway's Site: body cap, header deadline, idle timeout.

Each HTTP/1.1 connection is served by a L{GatewayChannel}, whose requests are
framed by llhttp (see L{twisted_lambdagw.server.channel}).  HTTP/2 connections,
negotiated by ALPN, are served by Twisted's H2Connection instead: the idle
timeout applies to them, and h2 enforces its own framing.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import Request
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_lambdagw._compat import GenericHTTPChannelProtocol

from .channel import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    MAX_HEAD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_PIPELINED_BYTES,
    GatewayChannel,
)
from .request import DEFAULT_MAX_BODY_SIZE, request_factory

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_HEADER_FIELDS",
    "MAX_HEAD_BYTES",
    "MAX_PIPELINED_BYTES",
    "GatewayChannel",
    "GatewaySite",
]


class GatewaySite(Site):
    """
    A Site for the gateway resource: body cap, header deadline, idle timeout.

    twisted.web error pages never show tracebacks here, and each HTTP/1.1
    connection is served by a L{GatewayChannel}.

    twisted.web's own access log lines are off: the gateway's JSON access
    log (``[gateway] access_log``) replaces them, they would put every full
    URI, query string included, into the daemon's log, and writing them
    through the legacy log costs about as much as signing a request.  An
    embedder who wants them sets ``twisted_access_log``.
    """

    twisted_access_log = False
    """Whether twisted.web writes its combined-format line for each request."""

    def __init__(
        self,
        resource: IResource,
        *,
        reactor: Any = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        header_timeout: float | None = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        # Form bodies are not parsed into request.args: the function gets
        # every body as it came, and the parsing (through the email package)
        # cost a fifth of serving a request.
        super().__init__(
            resource, timeout=idle_timeout, reactor=reactor, parsePOSTFormSubmission=False
        )
        self.requestFactory = request_factory(max_body_size)
        self.displayTracebacks = False
        self.header_timeout = header_timeout

    def log(self, request: Request) -> None:
        if self.twisted_access_log:
            super().log(request)

    def protocol(self) -> GenericHTTPChannelProtocol:
        # The generic protocol switches to HTTP/2 when ALPN chose it; the
        # HTTP/1.1 channel inside it is ours.
        return GenericHTTPChannelProtocol(GatewayChannel(self.header_timeout, self.reactor))
