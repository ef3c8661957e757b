"""
Twisted's stock ``ReverseProxyResource`` in front of the fake Lambda.

This is the bench's baseline: what plain twisted.web does for the same
request, with no signing and no connection pooling (it opens one upstream
connection per request).  The gateway's throughput target is a ratio to it.

    python bench/rproxy.py LISTEN_PORT UPSTREAM_PORT

It listens on 127.0.0.1 only and forwards the whole request path, so a client
posts the Lambda Invoke path itself (``/2015-03-31/functions/NAME/invocations``).
"""

from __future__ import annotations

import sys

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.task import react
from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Site

BACKLOG = 4096


def serve(reactor: IReactorTCP, listen_port: str, upstream_port: str) -> Deferred[None]:
    """
    Listen until killed; the returned Deferred never fires.
    """
    site = Site(ReverseProxyResource("127.0.0.1", int(upstream_port), b""))
    endpoint = TCP4ServerEndpoint(reactor, int(listen_port), BACKLOG, "127.0.0.1")
    listening: Deferred[None] = endpoint.listen(site).addCallback(lambda _: Deferred())
    return listening


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    react(serve, sys.argv[1:])
