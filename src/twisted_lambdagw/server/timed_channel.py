"""
The timers and address caches of the gateway's HTTP/1.1 channel.

The header deadline and twisted.web's idle timeout share one timer, moved
lazily; the addresses and the TLS answer are asked of the transport once.
L{twisted_lambdagw.server.channel.GatewayChannel} sets the attributes declared here.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.web.http import HTTPChannel

_SLACK = 1e-9
"""Seconds a deadline may be met early by: floating-point sums of times."""


class TimedChannel(HTTPChannel):
    """
    An HTTPChannel with a header deadline beside its idle timeout, on one timer.
    """

    header_timeout: float | None
    _clock: IReactorTime | None
    _head_deadline: float | None
    _idle_deadline: float | None
    _timer: IDelayedCall | None
    _secure: tuple[object, bool] | None
    _host: tuple[object, IAddress] | None
    _peer: tuple[object, IAddress] | None

    def isSecure(self) -> bool:
        # Asked for every request (the scheme in events and X-Forwarded-Proto);
        # the answer, an interface lookup on the transport, is kept for as
        # long as the transport is the same.
        transport = self.transport
        known = self._secure
        if known is None or known[0] is not transport:
            known = self._secure = (transport, bool(super().isSecure()))
        return known[1]

    # twisted.web's Request asks for both addresses as it is made, for every
    # request.  They do not change while the transport stays the same, and
    # TCP's transport makes a new address each time it is asked: the local
    # one with a getsockname() system call.

    def getHost(self) -> IAddress:
        transport = self.transport
        known = self._host
        if known is None or known[0] is not transport:
            known = self._host = (transport, super().getHost())
        return known[1]

    def getPeer(self) -> IAddress:
        transport = self.transport
        known = self._peer
        if known is None or known[0] is not transport:
            known = self._peer = (transport, super().getPeer())
        return known[1]

    # The header deadline and twisted.web's idle timeout (TimeoutMixin's
    # setTimeout and resetTimeout, which HTTPChannel calls around every
    # request) share one timer, moved lazily: a deadline only records a
    # time, and the timer, when it fires, acts on whichever deadline has
    # passed and sets itself again for the next one.  It is rescheduled
    # only when a deadline comes before it.  twisted.web's own timer was
    # cancelled and made again for every request, and so was the header
    # timer: with thousands of connections, that churn in the reactor's
    # heap of timed calls cost more than the timing was worth.

    def setTimeout(self, period: float | None) -> float | None:
        previous: float | None = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        if period is None:
            self._idle_deadline = None
            if not self.requests and self._head_deadline is None:
                # Not around a request: the channel is being given up (the
                # connection switched to HTTP/2, or is lost).
                self._cancel_timer()
            return previous
        self._idle_deadline = self._now() + period
        self._schedule()
        return previous

    def resetTimeout(self) -> None:
        if self._idle_deadline is not None and self.timeOut is not None:
            # Later than before: the timer, when it fires, moves on to it.
            self._idle_deadline = self._now() + self.timeOut

    def _now(self) -> float:
        if self._clock is None:
            # Without a clock given, the reactor whose callLater the Site set.
            self._clock = getattr(self.callLater, "__self__", None)
            if self._clock is None:
                from twisted.internet import reactor

                self._clock = reactor
        assert self._clock is not None
        return self._clock.seconds()

    def _schedule(self) -> None:
        deadline = self._head_deadline
        idle = self._idle_deadline
        if deadline is None or (idle is not None and idle < deadline):
            deadline = idle
        if deadline is None:
            return  # a running timer will find nothing to do
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= deadline:
                return
            timer.cancel()
        self._timer = self.callLater(max(0.0, deadline - self._now()), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        now = self._now()
        if self._head_deadline is not None and now >= self._head_deadline - _SLACK:
            self._head_deadline = None
            self._header_deadline()
        elif self._idle_deadline is not None and now >= self._idle_deadline - _SLACK:
            self._idle_deadline = None
            self.timeoutConnection()
        else:
            self._schedule()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _start_header_timer(self) -> None:
        if self._head_deadline is None and self.header_timeout:
            self._head_deadline = self._now() + self.header_timeout
            self._schedule()

    def _cancel_header_timer(self) -> None:
        self._head_deadline = None

    def _header_deadline(self) -> None:
        raise NotImplementedError
