"""
The gateway's HTTP request: twisted.web's Request with a body size cap.

twisted.web reads a whole request body before it renders anything and has
no limit of its own.  Lambda takes at most 6 MB, so a larger body is refused
as early as possible: an announced Content-Length over the cap is answered
as soon as the headers are in, and a chunked body as soon as its count passes
the cap.  The rest of the body is never read: the resource answers 413 with
``Connection: close`` (after its route and login checks, so it still says
404 or 401 first), nothing is invoked, and the connection is closed.

It also starts each response with less: no ``Server`` header (twisted.web's
names its version, which a gateway has no reason to tell every client), and
a ``Date`` made once a second rather than for every request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.resource import _IEncodingResource
from twisted.web.server import Request

DEFAULT_MAX_BODY_SIZE = 6 * 1024 * 1024


class GatewayRequest(Request):
    """
    A Request that stops reading its body past ``max_body_size`` bytes.

    ``body_too_large`` tells the resource to answer 413.  Over HTTP/1.x the
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

    def process(self) -> None:
        # twisted.web's Request.process, less its Server header, with the
        # Date header from the site's clock, made once a second.
        channel: Any = self.channel
        site = self.site = channel.site
        self.responseHeaders.setRawHeaders(b"date", [_http_date(site.reactor.seconds())])
        self.prepath = []
        self.postpath = [unquote_to_bytes(part) for part in self.path[1:].split(b"/")]
        if self.path == b"*":
            self._handleStar()
            return
        try:
            resource = site.getResourceFor(self)
            if _IEncodingResource.providedBy(resource):
                encoder = resource.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def write(self, data: bytes) -> None:
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


_date: tuple[int, bytes] = (-1, b"")
"""The last second a Date header was made for, and that header."""


def _http_date(now: float) -> bytes:
    """
    The Date header for the time C{now}, in seconds since the epoch.
    """
    global _date
    second = int(now)
    if _date[0] != second:
        _date = (second, datetimeToString(second))
    return _date[1]


def request_factory(max_body_size: int) -> type[GatewayRequest]:
    """
    A GatewayRequest class with the given cap, for ``Site.requestFactory``.
    """
    return type("GatewayRequest", (GatewayRequest,), {"max_body_size": max_body_size})
