"""
The gateway's HTTP request: twisted.web's Request with a body size cap.

twisted.web reads a whole request body before it renders anything and has
no limit of its own.  Lambda takes at most 6 MB, so a larger body is refused
while it arrives: it is never stored, and the resource answers 413 without
invoking anything.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

DEFAULT_MAX_BODY_SIZE = 6 * 1024 * 1024


class GatewayRequest(Request):
    """
    A Request that stops storing its body past ``max_body_size`` bytes.

    ``body_too_large`` tells the resource to answer 413.  The cap is checked
    against Content-Length before any body byte arrives, and again as the
    bytes of a chunked body arrive.
    """

    max_body_size = DEFAULT_MAX_BODY_SIZE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_too_large = False
        self._body_received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_size:
            self._refuse_body()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        if self._body_received > self.max_body_size:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def _refuse_body(self) -> None:
        self.body_too_large = True
        if self.channel is not None:
            # The rest of the body is discarded unread; do not reuse a
            # connection whose framing the gateway stopped following closely.
            self.channel.persistent = False
        content = getattr(self, "content", None)
        if content is not None:
            content.seek(0)
            content.truncate()


def request_factory(max_body_size: int) -> type[GatewayRequest]:
    """
    A GatewayRequest class with the given cap, for ``Site.requestFactory``.
    """
    return type("GatewayRequest", (GatewayRequest,), {"max_body_size": max_body_size})
