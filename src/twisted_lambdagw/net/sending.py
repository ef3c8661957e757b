"""
Whole messages sent at once, not on the reactor's next turn.

A Twisted TCP transport queues every write: it asks the reactor to watch
the socket for room (one C{epoll_ctl}), sends on a later turn of the event
loop when the socket is reported writable, and stops watching (another
C{epoll_ctl}).  The gateway writes two messages for each request, the
Invoke call and the reply, each in one write; queued, each costs a dispatch
through the reactor and two system calls, and waits for a turn of the loop
before it leaves, which with many connections busy can be a long one.

L{send_now} sends a message with one C{send()} when nothing is queued
before it, and queues only what the socket did not take, the usual way.
Everything else is written the usual way: TLS (its layer has its own
buffer), a connection that is closing or half-closed, one with bytes still
queued (they must leave first), any transport but Twisted's TCP one.

Only whole messages go this way.  Two small sends in a row make two TCP
segments, and Nagle's algorithm holds the second back until the first is
acknowledged; a queued write leaves with whatever else was written before
the reactor's turn.
"""

from __future__ import annotations

from typing import Any

from twisted_lambdagw._compat import idle_tcp_socket


def send_now(transport: Any, data: bytes) -> None:
    """
    Write C{data}, a whole message, to C{transport}: sent at once if it can be.

    A socket error is left to the transport: the bytes are queued, and the
    transport finds the error when it sends them and reports the connection
    lost, as for any write.
    """
    sock = idle_tcp_socket(transport)
    if sock is not None:
        try:
            sent = sock.send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
