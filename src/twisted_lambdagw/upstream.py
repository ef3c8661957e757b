"""
The HTTP client that carries Invoke calls to Lambda.

Every invocation is one POST to one of very few hosts (Lambda's endpoint in
each region), so the send path is built for that: connections are pooled and
kept, and nothing is logged per connection (twisted.web's pool logs
"Starting factory" and "Stopping factory" for each one it opens and closes).
"""

from __future__ import annotations

from typing import Any

from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory


class _QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    noisy = False


class QuietPool(HTTPConnectionPool):
    """
    An HTTPConnectionPool that does not log each connection it opens or closes.
    """

    # The pool builds one factory per new connection from this attribute,
    # which twisted.web documents (as an ivar) for exactly this kind of use.
    _factory = _QuietHTTP11ClientFactory


def persistent_pool(reactor: Any, max_per_host: int, idle_timeout: int = 60) -> QuietPool:
    """
    A persistent pool keeping up to C{max_per_host} idle connections per host,
    each closed after C{idle_timeout} seconds unused (before Lambda's side
    closes it: a connection the far end closed first fails the next request).
    """
    pool = QuietPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = idle_timeout
    return pool
