"""
What the gateway reads of other packages' private state, in one place.

Each name here is an assumption about a package's internals; the tests
(C{tests/test_compat.py}) assert each one, so an upgrade that breaks one
fails there, by name, rather than somewhere in a request.
"""

from __future__ import annotations

import errno
import operator
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import prometheus_client.metrics
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.tcp import Connection
from twisted.web.http_headers import Headers

if TYPE_CHECKING:
    # typeshed's name for what hashlib's constructors return (no such name
    # at run time: annotations only).
    from hashlib import _Hash as HashObject

    from twisted.internet.epollreactor import EPollReactor

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


# --- twisted.web's Headers (twisted_lambdagw.net.headers) ---------------------------
#
# Headers keeps its fields in ``_rawHeaders``: a dict from the capitalised
# name to the list of values. net.headers reads it directly (one lookup,
# where getRawHeaders capitalises the name again on every call) and fills it
# for headers that were checked already; that is 5.6 % of the instructions
# of a request (1.036 M with, 1.094 M without, bench/instructions.py).

raw_mapping: Callable[[Headers], dict[bytes, list[bytes]]] = operator.attrgetter("_rawHeaders")
"""The mapping C{headers} keeps its fields in (read it, never change it)."""


def set_raw_mapping(headers: Headers, fields: dict[bytes, list[bytes]]) -> None:
    """
    Make C{fields} (capitalised names, checked values) the fields of C{headers}.
    """
    headers._rawHeaders = fields


def raw_mapping_usable() -> bool:
    """
    Whether this Twisted's C{Headers} keeps its fields as L{raw_mapping} reads them.
    """
    probe = Headers({b"x-probe": [b"1"]})
    raw = getattr(probe, "_rawHeaders", None)
    return isinstance(raw, dict) and raw == {b"X-Probe": [b"1"]}


# --- Twisted's TCP transport (twisted_lambdagw.net.sending) -------------------------
#
# send_now sends a whole message with one send() when the transport has
# nothing queued: 6 % of the instructions of a request (1.099 M without,
# 1.036 M with). It reads the transport's state, one attribute of it private.

TCP_TRANSPORT_STATE = ("dataBuffer", "connected", "disconnecting", "_writeDisconnected", "TLS")
"""The attributes of twisted.internet.tcp.Connection L{idle_tcp_socket} reads."""

_KNOWN_TRANSPORT = all(hasattr(Connection, name) for name in TCP_TRANSPORT_STATE)


def idle_tcp_socket(transport: object) -> socket.socket | None:
    """
    The socket of C{transport} if it is Twisted's TCP transport, open, not
    TLS, and with nothing queued (a byte sent on it now goes out in order);
    else None.
    """
    if (
        _KNOWN_TRANSPORT
        and isinstance(transport, Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport.dataBuffer
        and not getattr(transport, "_tempDataBuffer", True)
    ):
        sock: socket.socket = transport.socket
        return sock
    return None


# --- twisted.web's HTTP client (twisted_lambdagw.invokers.aws.invoker) -------------
#
# A request that never left (the connection was lost before it was written)
# fails with RequestNotSent, defined in the private twisted.web._newclient;
# the invoker retries it as it retries a refused connection.
from twisted.web._newclient import RequestNotSent  # noqa: E402

# --- twisted.web's HTTPChannel, read by the local Runtime API -------------------------
#
# The local backend's Runtime API relays a streamed response body as its
# chunks arrive. It reads, from twisted.web's HTTPChannel, the request
# target as received (``_path``, set before the body's first byte), the
# chunked decoder (``_transferDecoder``), and that decoder's trailer lines
# (``_trailerHeaders``, filled once the last chunk is in).


def channel_path(channel: object) -> bytes | None:
    """
    The request target of the request C{channel} is reading, before its body.
    """
    path = getattr(channel, "_path", None)
    return path if isinstance(path, bytes) else None


def transfer_decoder(channel: object) -> object:
    """
    The body decoder of the request C{channel} is reading (None if none).
    """
    return getattr(channel, "_transferDecoder", None)


def trailer_lines(decoder: object) -> Sequence[bytes]:
    """
    The trailer lines a chunked decoder has read (none for any other decoder).
    """
    lines = getattr(decoder, "_trailerHeaders", ())
    return lines if isinstance(lines, list) else ()


# --- twisted.application's endpoint service (twisted_lambdagw.daemon.tap) ----------


def raise_synchronously(service: StreamServerEndpointService) -> None:
    """
    Make C{service} fail its start when its port cannot be bound, rather
    than log the error and serve nothing: what C{strports.service} does,
    through the same private attribute.
    """
    service._raiseSynchronously = True


# --- botocore's SigV4 signer (twisted_lambdagw.invokers.aws.invoker) ---------------


class TimedSigV4Auth(SigV4Auth):
    """
    botocore's SigV4 signer, with the signing time given rather than read.

    C{SigV4Auth.add_auth} reads the clock; this runs its steps (two of them
    private: C{_modify_request_before_signing} and
    C{_inject_signature_to_request}) with the time it is given, so tests
    sign at a frozen moment without patching anything global.
    """

    def __init__(self, credentials: ReadOnlyCredentials, region: str, when: float) -> None:
        super().__init__(credentials, "lambda", region)
        self._when = when

    def add_auth(self, request: AWSRequest) -> None:
        moment = datetime.fromtimestamp(self._when, UTC).replace(tzinfo=None)
        request.context["timestamp"] = moment.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


# --- Twisted's epoll reactor (twisted_lambdagw.daemon.reactor) --------------------

EPOLL_REACTOR_STATE = ("_poller", "_selectables", "_doReadOrWrite")
"""EPollReactor's private attributes L{epoll_dispatch} uses (asserted by the tests)."""


def epoll_dispatch(reactor: EPollReactor, timeout: float | None) -> None:
    """
    C{EPollReactor.doPoll}, less the legacy log context it pushes around
    each ready socket (C{callWithLogger}): wait for sockets, then hand each
    to the reactor's own dispatch, C{_doReadOrWrite}.
    """
    if timeout is None:
        timeout = -1  # until something is ready
    try:
        # At most as many events as sockets watched, as Twisted asks.
        ready = reactor._poller.poll(timeout, len(reactor._selectables))
    except OSError as err:
        if err.errno == errno.EINTR:
            return
        raise
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite
    for fd, event in ready:
        # A socket handled earlier in this loop may have closed this one.
        selectable = selectables.get(fd)
        if selectable is not None:
            handle(selectable, fd, event)


# --- prometheus-client (twisted_lambdagw.observe.metrics) --------------------------


def prometheus_uses_created() -> bool:
    """
    Whether prometheus-client shows C{_created} samples: its private switch,
    turned off by C{PROMETHEUS_DISABLE_CREATED_SERIES} or
    C{disable_created_metrics()}; the gateway's metrics follow it.
    """
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


# --- The limits store's Redis pool (twisted_lambdagw.policies.limits.redis) ---------


def redis_pool_retry_delays(handler: Any, *, initial: float, maximum: float) -> None:
    """
    Make a txredisapi pool reconnect within C{maximum} seconds of a lost server.

    txredisapi waits up to 10 s between attempts (C{RedisFactory.maxDelay}),
    and offers no argument for it; a limits store must be counted on again
    as soon as it is back.  The pool's factory is C{handler._factory}; its
    C{retryDelay} reads C{initialDelay} and C{maxDelay} at every attempt.
    """
    factory = handler._factory
    assert hasattr(factory, "initialDelay") and hasattr(factory, "maxDelay")
    factory.initialDelay = initial
    factory.maxDelay = maximum


def redis_pool_keeps_trying(handler: Any, failed: Callable[[str], object]) -> None:
    """
    Keep a txredisapi pool reconnecting after a connection's handshake fails.

    When C{AUTH} or C{SELECT} on a new connection fails or times out (a
    server slow to answer, a password changed), txredisapi calls its
    factory's C{stopTrying()}, which stops every connection of the pool for
    good, and errbacks the factory's C{deferred}, which nobody holds
    ("Unhandled error in Deferred").  A limits store would then stay down
    until a restart.  Here C{stopTrying} of this factory does nothing (the
    store stops its pool with C{disconnect()}, which does not use it), and
    the C{deferred}'s failure goes to C{failed} as one line.
    """
    factory = handler._factory
    assert callable(factory.stopTrying) and isinstance(factory.deferred, Deferred)

    def keep_trying() -> Deferred[None]:
        return succeed(None)

    factory.stopTrying = keep_trying
    factory.deferred.addErrback(lambda failure: failed(str(failure.value)))


def redis_pool_connections(handler: Any) -> Sequence[Any]:
    """
    The live list of a txredisapi pool's connections (its protocols).

    The store sends each check straight to a connected one, skipping the
    handler's per-call wait for a free connection (an inlineCallbacks
    generator and two Deferreds per call).  C{handler._factory.pool} is
    the list the factory appends a connection to once it is ready and
    removes it from once it is lost; each has C{connected} (0 once lost)
    and the public C{execute_command}.
    """
    pool = handler._factory.pool
    assert isinstance(pool, list)
    return pool


__all__ = [
    "EPOLL_REACTOR_STATE",
    "HTTP_CHANNEL_STATE",
    "TCP_TRANSPORT_STATE",
    "GenericHTTPChannelProtocol",
    "HashObject",
    "RequestNotSent",
    "TimedSigV4Auth",
    "channel_path",
    "epoll_dispatch",
    "idle_tcp_socket",
    "prometheus_uses_created",
    "raise_synchronously",
    "raw_mapping",
    "raw_mapping_usable",
    "redis_pool_connections",
    "redis_pool_keeps_trying",
    "redis_pool_retry_delays",
    "set_raw_mapping",
    "trailer_lines",
    "transfer_decoder",
]
