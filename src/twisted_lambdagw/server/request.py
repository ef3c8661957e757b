"""
The gateway's HTTP request: twisted.web's Request with a body size cap.

twisted.web reads a whole request body before it renders anything and has
no limit of its own.  Lambda takes at most 6 MB, so a larger body is refused
as early as possible: an announced Content-Length over the cap is answered
as soon as the headers are in, and a chunked body as soon as its count passes
the cap.  The rest of the body is never read: the resource answers 413 with
C{Connection: close} (after its route and login checks, so it still says
404 or 401 first), nothing is invoked, and the connection is closed.

Its answers carry no C{Server} header (twisted.web's names its version,
which a gateway has no reason to tell every client): the resource's
the request removes it as its head is written (L{GatewayRequest.write},
which twisted.web's C{finish} calls too for a response without a body).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

DEFAULT_MAX_BODY_SIZE = 6 * 1024 * 1024


class GatewayRequest(Request):
    """
    A Request that stops reading its body past C{max_body_size} bytes.

    C{body_too_large} tells the resource to answer 413.  Over HTTP/1.x the
    request is then handed to the resource at once, with an empty body, and
    the connection is closed after the answer.  Over HTTP/2 only the stream
    is affected, so the body is discarded as it arrives and the 413 is sent
    at its end.
    """

    max_body_size = DEFAULT_MAX_BODY_SIZE

    # Class defaults rather than an __init__ that sets them: the state of a
    # request that has not hit any limit, without one more call per request.
    body_too_large = False
    _body_received = 0
    _received = False
    _gone = False
    _on_lost: Callable[[Failure], object] | None = None

    def on_connection_lost(self, watcher: Callable[[Failure], object]) -> None:
        """
        Call C{watcher} with the reason if the connection is lost before the
        response is finished: what C{notifyFinish().addErrback(watcher)}
        does, without a Deferred made and fired for every request.  One
        watcher; a second replaces the first.
        """
        self._on_lost = watcher

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_size:
            self._refuse_body()
            channel = self._http1_channel()
            if channel is not None:
                # Do not invite the body with "100 Continue"; and with the
                # channel's length at 0 it treats the request as complete as
                # soon as this returns, so it is answered now.
                self.requestHeaders.removeHeader(b"expect")
                channel.length = 0
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        if self._body_received > self.max_body_size:
            self._refuse_body()
            channel = self._http1_channel()
            if channel is not None:
                # The chunked decoder calling us may still hold buffered
                # bytes: stop reading, and complete the request once it has
                # returned (unless that buffer held the last chunk, which
                # completes the request itself).
                producer = IPushProducer(channel.transport, None)
                if producer is not None:
                    producer.pauseProducing()
                channel.callLater(0, lambda: self._complete_early(channel))
            return
        super().handleContentChunk(data)

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            # twisted.web's process() set it; the head is written now.
            self.responseHeaders.removeHeader(b"server")
        super().write(data)
        # The gateway's channel holds a response head to send it with the
        # body's first bytes; if none came with this write, the head goes now.
        channel: Any = self.channel
        if getattr(channel, "held_head", None):
            channel.send_held_head()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._received = True
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._gone = True
        super().connectionLost(reason)
        watcher, self._on_lost = self._on_lost, None
        if watcher is not None and not self.finished:
            watcher(reason)

    def _complete_early(self, channel: HTTPChannel) -> None:
        if not (self._received or self._gone):
            channel.allContentReceived()

    def _http1_channel(self) -> HTTPChannel | None:
        return self.channel if isinstance(self.channel, HTTPChannel) else None

    def _refuse_body(self) -> None:
        self.body_too_large = True
        channel = self._http1_channel()
        if channel is not None:
            # The rest of the body is never read, so the connection cannot
            # carry another request.
            channel.persistent = False
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        content = getattr(self, "content", None)
        if content is not None:
            content.seek(0)
            content.truncate()


def request_factory(max_body_size: int) -> type[GatewayRequest]:
    """
    A GatewayRequest class with the given cap, for C{Site.requestFactory}.
    """
    return type("GatewayRequest", (GatewayRequest,), {"max_body_size": max_body_size})
