"""
The daemon's event loop: Twisted's epoll reactor, each ready socket handled without a log context.

Twisted's reactors hand every ready socket to its C{doRead} or C{doWrite}
inside C{twisted.python.log.callWithLogger}, which pushes a copy of the
legacy log context with the connection's log prefix in it, for the length
of the call.  Only the legacy C{log.msg} and C{log.err} read that context
(as the C{system} of their events); C{twisted.logger.Logger}, which the
gateway and twisted.web log through, names its namespace instead.  The
gateway handles two ready sockets per request (the client's request and
Lambda's answer), and the two contexts cost about 3 % of the instructions
of a request.

L{GatewayReactor} is Twisted's epoll reactor with its poll loop written
without that context, and nothing else changed: the same dispatch
(C{_doReadOrWrite}), which still logs and drops a connection whose handler
raised.  The legacy "Unhandled Error" it logs then has C{-} as its system
where it had the connection's log prefix; its traceback names the protocol.

C{twistd lambdagw} installs it (L{install_default}) unless a reactor was
chosen already (C{twistd --reactor ...}) or the platform has no epoll;
workers run whatever reactor their parent runs.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

if sys.platform == "linux":
    from twisted.internet.epollreactor import EPollReactor

    class GatewayReactor(EPollReactor):
        """
        Twisted's epoll reactor, each ready socket handled without a log context.
        """

        def doPoll(self, timeout: float | None) -> None:
            if timeout is None:
                timeout = -1  # until something is ready
            try:
                # At most as many events as sockets watched, as Twisted asks.
                ready = self._poller.poll(timeout, len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            handle = self._doReadOrWrite
            for fd, event in ready:
                # A socket handled earlier in this loop may have closed this one.
                selectable = selectables.get(fd)
                if selectable is not None:
                    handle(selectable, fd, event)

        doIteration = doPoll


def install() -> Any:
    """
    Install L{GatewayReactor} as the reactor (C{twisted.internet.reactor}).

    @raise twisted.internet.error.ReactorAlreadyInstalledError: one is installed.
    """
    from twisted.internet.main import installReactor

    reactor = GatewayReactor()
    installReactor(reactor)
    return reactor


def install_default() -> Any:
    """
    The reactor to run on: the one installed, or else, on Linux (where
    Twisted's epoll reactor runs), L{GatewayReactor}, installed now.
    """
    if sys.platform == "linux" and "twisted.internet.reactor" not in sys.modules:
        install()
    from twisted.internet import reactor

    return reactor
