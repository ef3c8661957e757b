"""
An opt-in event loop: Twisted's epoll reactor, each ready socket handled
without a log context.

Twisted's reactors hand every ready socket to its C{doRead} or C{doWrite}
inside C{twisted.python.log.callWithLogger}, which pushes a copy of the
legacy log context with the connection's log prefix in it, for the length
of the call.  Only the legacy C{log.msg} and C{log.err} read that context
(as the C{system} of their events); C{twisted.logger.Logger}, which the
gateway and twisted.web log through, names its namespace instead.  The
gateway handles two ready sockets per request (the client's request and
Lambda's answer), and the two contexts cost about 3.5 % of the instructions
of a request.

L{GatewayReactor} is Twisted's epoll reactor with its poll loop written
without that context (L{twisted_lambdagw._compat.epoll_dispatch}), and
nothing else changed: the same dispatch, which still logs and drops a
connection whose handler raised.  The legacy "Unhandled Error" it logs then
has C{-} as its system where it had the connection's log prefix.

It is never installed unless asked for, as a twistd reactor plugin
(C{twisted/plugins/lambdagw_reactor.py}): C{twistd --reactor lambdagw-epoll
lambdagw ...} (Linux only).  Workers run whatever reactor their parent runs.
"""

from __future__ import annotations

import sys

from twisted.internet.interfaces import IReactorCore

from twisted_lambdagw._compat import epoll_dispatch

if sys.platform == "linux":
    from twisted.internet.epollreactor import EPollReactor

    class GatewayReactor(EPollReactor):
        """
        Twisted's epoll reactor, each ready socket handled without a log context.
        """

        def doPoll(self, timeout: float | None) -> None:
            epoll_dispatch(self, timeout)

        doIteration = doPoll


def install() -> IReactorCore:
    """
    Install L{GatewayReactor} as the reactor (C{twisted.internet.reactor}).

    @raise twisted.internet.error.ReactorAlreadyInstalledError: one is installed.
    """
    from twisted.internet.main import installReactor

    reactor = GatewayReactor()
    installReactor(reactor)
    return reactor
