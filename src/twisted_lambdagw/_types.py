"""
The types of the collaborators the gateway is given rather than imports.

As in treq's C{_types}: the reactor is typed by the interfaces the gateway
uses (one combined interface, since a zope interface cannot be a union of
several), the HTTP client by the subset of treq's C{HTTPClient} it
calls, and the thread runner by its one call, so a test can hand in
C{treq.testing.StubTreq}, a C{MemoryReactorClock} (cast to
L{IGatewayReactor}) or a function that runs its argument at once, and the
type checker still sees every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from hyperlink import EncodedURL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorProcess,
    IReactorSocket,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

T = TypeVar("T")


class LocalReactor(IReactorTCP, IReactorProcess, IReactorTime):
    """
    What the local backend needs from a reactor: listen, spawn, keep time.
    """


class IGatewayReactor(IReactorCore, IReactorThreads, IReactorFDSet, IReactorSocket, LocalReactor):
    """
    What a gateway needs from its reactor: start and stop (signals, startup
    triggers), time (deadlines, retries), TCP (listening, and connecting to
    Lambda), a thread pool (botocore's blocking credential look-ups, password
    hashing), processes (the local backend's runtimes and the gateway's
    workers), file descriptors (a worker's pipe from its parent) and adopted
    sockets (the listening sockets a worker is handed).  The reactors
    Twisted installs on Linux and macOS provide all of these.
    """


class HTTPClient(Protocol):
    """
    The part of treq's C{HTTPClient} the AWS invoker calls: one POST, its
    response unbuffered.  C{treq.testing.StubTreq} provides it too.
    """

    def post(
        self,
        url: EncodedURL,
        *,
        data: bytes,
        headers: Headers,
        cookies: object,
        allow_redirects: bool,
        unbuffered: bool,
        reactor: IReactorTime | None,
    ) -> Deferred[IResponse]:
        """
        Send a POST to C{url}; the Deferred fires with the response once its
        head has arrived (its body is read by the caller).
        """


class RunInThread(Protocol):
    """
    Runs a blocking function (botocore's credential look-up, a bcrypt check)
    in the reactor's thread pool; the Deferred fires with its result.

    Generic in the method, not the class: one runner serves callers whose
    functions return different types, each keeping its own result type.
    """

    def __call__(self, f: Callable[[], T], /) -> Deferred[T]:
        """
        Call C{f} in a thread; the Deferred fires in the reactor thread.
        """
