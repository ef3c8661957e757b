"""
Listening sockets that several processes share, with C{SO_REUSEPORT}.

For C{workers = N} the parent binds N sockets per C{listen} line on the
same address, keeps one and hands the others to its workers (see
L{twisted_lambdagw.daemon.workers}); the kernel spreads new connections evenly over
the sockets, so over the processes.  (With one socket shared by all, the
process that wakes first accepts a whole batch, and a handful of long-lived
connections can all land on one process.)

Before the group is bound, the address is bound once without
C{SO_REUSEPORT} and held while the group binds.  That bind fails if
anything listens there, including another gateway's group, which a
C{SO_REUSEPORT} bind would otherwise silently join, taking a share of its
connections.

Each line's endpoint is built as for one process and asked to listen on a
recording stand-in reactor, which yields its address, backlog and TLS
context however the options were spelled; connections accepted on an
C{ssl:} line are served through the same TLS wrapper C{listenSSL} uses.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorSocket,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from twisted_lambdagw.core.config import Config, ConfigError

EndpointFor = Callable[[IReactorCore, str], IStreamServerEndpoint]
"""Builds the server endpoint a C{listen} line describes, on a given reactor."""


@dataclass(frozen=True)
class Listener:
    """
    One C{listen} line as the address the processes share.

    C{tls} is the endpoint's TLS context factory (for C{ssl:} lines): the
    parent's and each worker's sockets are served through the same wrapping
    that C{listenSSL} would have used.
    """

    description: str
    family: socket.AddressFamily
    interface: str
    port: int
    backlog: int
    tls: Any = field(default=None, repr=False)

    def factory(self, site: IProtocolFactory) -> Any:
        """
        What serves the connections this listener accepts.

        (Any: C{adoptStreamPort} is annotated for C{ServerFactory}, which the
        TLS wrapper is not, though it serves as well.)
        """
        if self.tls is None:
            return site
        return TLSMemoryBIOFactory(self.tls, False, site)

    def address(self, port: int) -> tuple[Any, ...]:
        """
        The socket address to bind, resolved as Twisted's own TCP ports do.
        """
        if self.family == socket.AF_INET6:
            info = socket.getaddrinfo(
                self.interface, port, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )
            return tuple(info[0][4])
        return (self.interface, port)


class _Recorder:
    """
    A stand-in reactor that records what an endpoint would listen on.

    Lets the gateway read the address, backlog and TLS settings out of any
    endpoint a C{listen} line describes (however its options were spelled)
    without binding anything.
    """

    def __init__(self) -> None:
        self.listening: list[tuple[int, int, str, Any]] = []

    def listenTCP(self, port: int, factory: object, backlog: int = 50, interface: str = "") -> None:
        self.listening.append((port, backlog, interface, None))

    def listenSSL(
        self,
        port: int,
        factory: object,
        contextFactory: object,
        backlog: int = 50,
        interface: str = "",
    ) -> None:
        self.listening.append((port, backlog, interface, contextFactory))


def shared_listeners(config: Config, endpoint_for: EndpointFor) -> list[Listener]:
    """
    The listeners of C{config}, each as an address the processes can share.

    Raises ConfigError naming C{[gateway] workers} for a line that cannot be
    shared (a C{unix:} socket, an adopted descriptor).
    """
    listeners = []
    for description in config.gateway.listen:
        recorder = _Recorder()
        errors: list[Failure] = []
        try:
            # The recorder stands in for the reactor: a tcp: or ssl: endpoint
            # calls only its listenTCP or listenSSL.
            reactor = cast(IReactorCore, recorder)
            endpoint_for(reactor, description).listen(Factory()).addErrback(errors.append)
        except Exception:
            errors.append(Failure())
        if errors or len(recorder.listening) != 1:
            raise ConfigError(
                f"{config.path}: [gateway] workers: {config.gateway.workers} processes cannot"
                f" share listen endpoint {description!r}: only tcp: and ssl: endpoints can be"
                " shared (or set workers = 1)"
            )
        [(port, backlog, interface, tls)] = recorder.listening
        family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
        listeners.append(Listener(description, family, interface, port, backlog, tls))
    return listeners


def check_workers(config: Config, endpoint_for: EndpointFor) -> None:
    """
    Raise ConfigError if C{config} asks for workers its listeners cannot have.
    """
    if config.gateway.workers > 1:
        shared_listeners(config, endpoint_for)


def _socket(family: socket.AddressFamily, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def bind_shared(listener: Listener, count: int) -> list[socket.socket]:
    """
    C{count} listening sockets on C{listener}'s address, with C{SO_REUSEPORT}.

    Raises L{CannotListenError} (as Twisted's own ports do) when the address
    is taken or cannot be bound; nothing stays open then.
    """
    port = listener.port
    sockets: list[socket.socket] = []
    probe = _socket(listener.family, reuse_port=False)
    try:
        probe.bind(listener.address(port))
        port = probe.getsockname()[1]
        for _ in range(count):
            sock = _socket(listener.family, reuse_port=True)
            sockets.append(sock)
            sock.bind(listener.address(port))
            sock.listen(listener.backlog)
            sock.setblocking(False)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise CannotListenError(listener.interface, port, e) from None
    finally:
        probe.close()
    return sockets


def stop_listening(ports: Sequence[IListeningPort]) -> Deferred[None]:
    """
    Stop every port; fires when all have stopped.
    """
    stopping: list[Deferred[Any]] = []
    for port in ports:
        d = port.stopListening()
        if isinstance(d, Deferred):
            stopping.append(d)
    return gatherResults(stopping).addCallback(lambda _: None)


class AdoptedListeners(Service):
    """
    Serves listening sockets made elsewhere: a worker's, inherited from
    its parent.

    C{sockets} holds a C{(file descriptor, address family)} pair for each
    of C{listeners}.  The descriptors are closed once adopted.
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        sockets: Sequence[tuple[int, int]],
        site: IProtocolFactory,
        reactor: IReactorSocket,
    ) -> None:
        if len(listeners) != len(sockets):
            raise ValueError(f"{len(sockets)} sockets for {len(listeners)} listeners")
        self.listeners = list(listeners)
        self._sockets = list(sockets)
        self._site = site
        self._reactor = reactor
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()
        for listener, (fd, family) in zip(self.listeners, self._sockets, strict=True):
            factory = listener.factory(self._site)
            port = self._reactor.adoptStreamPort(fd, socket.AddressFamily(family), factory)
            self.ports.append(port)
            # The port holds its own duplicate; this one would keep the
            # socket open (and connections queueing) after it stops.
            os.close(fd)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        ports, self.ports = self.ports, []
        return stop_listening(ports)
