"""
What Twisted itself costs per request: the floor under any gateway built on it.

    python bench/floor.py MODE LISTEN_PORT UPSTREAM_PORT

MODE is one of:

``hello``
    twisted.web's Site answering every POST with a fixed JSON body: the
    server half alone (request parsing, one resource, one response).
``agent``
    The same Site forwarding each POST's body to the fake Lambda through
    twisted.web's Agent (persistent pool, one endpoint made once) and
    answering with the reply's body: server plus client, nothing else.
``treq``
    As ``agent``, with treq's HTTPClient over that Agent (a URL parsed once,
    redirects off, the reply read with ``treq.content``).

None of them signs, builds an event, checks a name or keeps a log or
metric: the gateway's CPU per request minus these rows' is what the
gateway's own work costs.  It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from hyperlink import EncodedURL
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import react
from twisted.web import http
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.iweb import IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

BACKLOG = 4096
INVOKE_PATH = "/2015-03-31/functions/fast-httpjson/invocations"
HELLO = b'{"ok":true}'


@implementer(IBodyProducer)
class _Bytes:
    """
    A body in memory, written in one call (no cooperator).
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _OneEndpoint:
    """
    The endpoint factory for Agent.usingEndpointFactory: one endpoint, kept.
    """

    def __init__(self, endpoint: TCP4ClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: object) -> TCP4ClientEndpoint:
        return self._endpoint


class QuietSite(Site):
    """
    A Site that writes no access log line per request (the gateway writes none by default).
    """

    def log(self, request: http.Request) -> None:
        pass


class Hello(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return HELLO


class Forward(Resource):
    """
    POST the request's body upstream; answer with the reply's body.
    """

    isLeaf = True

    def __init__(self, send: Callable[[bytes], Deferred[bytes]]) -> None:
        super().__init__()
        self._send = send

    def render_POST(self, request: Request) -> Any:
        assert request.content is not None
        body = request.content.read()

        def answer(reply: bytes) -> None:
            request.setHeader(b"content-type", b"application/json")
            request.write(reply)
            request.finish()

        def failed(reason: Any) -> None:
            request.setResponseCode(502)
            request.finish()

        self._send(body).addCallbacks(answer, failed)
        return NOT_DONE_YET


def sender(mode: str, reactor: Any, upstream_port: int) -> Callable[[bytes], Deferred[bytes]]:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1000
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", upstream_port)
    agent = Agent.usingEndpointFactory(reactor, _OneEndpoint(endpoint), pool=pool)
    text = f"http://127.0.0.1:{upstream_port}{INVOKE_PATH}"
    if mode == "agent":
        raw = text.encode("ascii")

        def via_agent(body: bytes) -> Deferred[bytes]:
            d: Deferred[IResponse] = agent.request(b"POST", raw, None, _Bytes(body))
            return d.addCallback(readBody)

        return via_agent

    import treq
    from treq.client import HTTPClient

    client = HTTPClient(agent)
    url = EncodedURL.from_text(text)

    def via_treq(body: bytes) -> Deferred[bytes]:
        d = client.post(url, data=_Bytes(body), allow_redirects=False, unbuffered=True)
        return d.addCallback(treq.content)

    return via_treq


def serve(reactor: Any, mode: str, listen_port: str, upstream_port: str) -> Deferred[None]:
    """
    Listen until killed; the returned Deferred never fires.
    """
    if mode == "hello":
        root: Resource = Hello()
    elif mode in ("agent", "treq"):
        root = Forward(sender(mode, reactor, int(upstream_port)))
    else:
        sys.exit(__doc__)
    site = QuietSite(root)
    site.noisy = False
    endpoint = TCP4ServerEndpoint(reactor, int(listen_port), BACKLOG, "127.0.0.1")
    listening: Deferred[None] = endpoint.listen(site).addCallback(lambda _: Deferred())
    return listening


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    react(serve, sys.argv[1:])
