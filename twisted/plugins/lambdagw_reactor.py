"""
The opt-in reactor for twistd: C{twistd --reactor lambdagw-epoll lambdagw ...}.

Every plugin scan imports this file, so it names the reactor's module and
nothing more; the module is imported only when the reactor is chosen.
"""

from twisted.application.reactors import Reactor

lambdagw_epoll = Reactor(
    "lambdagw-epoll",
    "twisted_lambdagw.daemon.reactor",
    "Twisted's epoll reactor without a legacy log context per ready socket (Linux).",
)
