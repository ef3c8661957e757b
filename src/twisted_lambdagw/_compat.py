"""
What the gateway reads of other packages' private state, in one place.

Each name here is an assumption about a package's internals; the tests
(C{tests/test_compat.py}) assert each one, so an upgrade that breaks one
fails there, by name, rather than somewhere in a request.
"""

from __future__ import annotations

# --- The HTTP/1.1 channel (twisted_lambdagw.server.channel) -------------------------
#
# GatewayChannel subclasses twisted.web's HTTPChannel, replacing its parser
# (LineReceiver) with llhttp and keeping the rest: the Request it makes, the
# queue of requests (``requests``), the producer plumbing and the timeouts.
# It reads and sets these attributes of HTTPChannel, as HTTPChannel's own
# methods do:
#
#  - ``_networkProducer``: the transport as a push producer, paused while
#    pipelined requests wait and resumed when they are handed over;
#  - ``_handlingRequest``: true from a request's end of body to its
#    requestDone (HTTPChannel's pauseProducing reads it);
#  - ``_waitingForTransport``: true while the transport asked to pause;
#  - ``_savedTimeOut``: the idle timeout put aside while a request is served;
#  - ``_requestProducer``: the producer a Request registered;
#  - ``_send100Continue``: writes the interim ``100 Continue``.
#
# The generic protocol that switches a connection to HTTP/2 after ALPN is
# twisted.web's private ``_GenericHTTPChannelProtocol``.
from twisted.web.http import _GenericHTTPChannelProtocol as GenericHTTPChannelProtocol

HTTP_CHANNEL_STATE = (
    "_networkProducer",
    "_handlingRequest",
    "_waitingForTransport",
    "_savedTimeOut",
    "_requestProducer",
    "_send100Continue",
)
"""HTTPChannel's private attributes GatewayChannel uses (asserted by the tests)."""

__all__ = ["HTTP_CHANNEL_STATE", "GenericHTTPChannelProtocol"]
