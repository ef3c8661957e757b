"""
Limits counted in Redis: one exact limit for every process and machine
that shares the server.

Each check is one Lua script run atomically by the server: it refills the
key's token bucket by the server's own clock (C{TIME}), counts the quota
window, admits or refuses, writes back only what an admitted request
changed, and sets the keys to expire when they would read as fresh again
(a full bucket; the end of the window).  The script goes by C{EVALSHA}; a
server that does not know it (a restart, C{SCRIPT FLUSH}) answers
C{NOSCRIPT} and gets it once by C{EVAL}, which also caches it again.

The client is txredisapi: Twisted-native (no thread, no blocking call on
the reactor thread), with a pool of connections that reconnect by
themselves.  Every check has a short deadline; past it, or with no
connection, the check fails with L{StoreUnavailable} and the step applies
C{limits_store_down}.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger

from twisted_lambdagw._compat import (
    redis_pool_connections,
    redis_pool_keeps_trying,
    redis_pool_retry_delays,
)

from .config import RouteLimits, StoreConfig
from .store import Decision, StoreUnavailable, decision, quota_window

LUA = b"""
-- KEYS[1]: the bucket (hash t=tokens, ts=when); KEYS[2]: the quota window's count
-- ARGV: rate (tokens/s, 0: none), burst, quota (0: none), seconds left in the window
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local window_left = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens = burst
if rate > 0 then
  local stored = redis.call('HMGET', KEYS[1], 't', 'ts')
  if stored[1] then
    tokens = math.min(burst, tonumber(stored[1]) + math.max(0, now - tonumber(stored[2])) * rate)
  end
end
local used = 0
if quota > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local refused = ''
local retry = 0
if rate > 0 and tokens < 1 then
  refused = 'rate'
  retry = (1 - tokens) / rate
elseif quota > 0 and used >= quota then
  refused = 'quota'
  retry = window_left
end
if refused == '' then
  if rate > 0 then
    tokens = tokens - 1
    redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
  end
  if quota > 0 then
    used = redis.call('INCR', KEYS[2])
    if used == 1 then
      redis.call('EXPIRE', KEYS[2], math.ceil(window_left) + 60)
    end
  end
end
-- One status line (floats as text: Redis would cut a Lua number to an
-- integer): the cheapest reply to read, one line, no bulk strings.
return redis.status_reply(refused .. ' ' .. tostring(tokens) .. ' ' .. tostring(used)
  .. ' ' .. tostring(retry))
"""
LUA_SHA = hashlib.sha1(LUA, usedforsecurity=False).hexdigest()
"""What EVALSHA names the script by (Redis's own choice of hash)."""
LUA_SHA_BYTES = LUA_SHA.encode("ascii")


class RedisClient(Protocol):
    """The part of txredisapi's connection handler this store uses."""

    def execute_command(self, *args: object) -> Deferred[object]: ...

    def disconnect(self) -> Deferred[object]: ...


def connect(
    config: StoreConfig,
    timeout: float,
    clock: IReactorTime,
    poolsize: int = 4,
    retry_max: float = 1.0,
) -> RedisClient:
    """
    A lazy txredisapi pool for C{config}: it connects in the background and
    again whenever a connection is lost, at most C{retry_max} seconds apart,
    even after a new connection's C{AUTH} or C{SELECT} failed (logged at most
    once a minute, by C{clock}).  Database 0, Redis's default, is not
    selected at all: one round trip fewer on every new connection.

    txredisapi takes the running reactor when it is imported, so it is
    imported here, once a reactor runs, never at module import.
    """
    import txredisapi  # type: ignore[import-untyped]

    client: RedisClient
    common = {
        "dbid": config.db or None,
        "poolsize": poolsize,
        "password": config.password,
        "replyTimeout": timeout,
        "convertNumbers": False,
    }
    if config.unix_path is not None:
        client = txredisapi.lazyUnixConnectionPool(config.unix_path, **common)
    else:
        client = txredisapi.lazyConnectionPool(
            config.host,
            config.port,
            ssl_context_factory=optionsForClientTLS(config.host) if config.tls else False,
            connectTimeout=max(1.0, timeout),
            username=config.username,
            **common,
        )
    redis_pool_retry_delays(client, initial=min(0.1, retry_max), maximum=retry_max)
    redis_pool_keeps_trying(client, _HandshakeLog(clock, config.url).failed)
    return client


class _HandshakeLog:
    """
    Logs a Redis pool's failed handshakes, at most once a minute.
    """

    log = Logger()
    EVERY = 60.0

    def __init__(self, clock: IReactorTime, url: str) -> None:
        self._clock = clock
        self._url = url
        self._last: float | None = None

    def failed(self, why: str) -> None:
        now = self._clock.seconds()
        if self._last is None or now - self._last >= self.EVERY:
            self._last = now
            self.log.warn(
                "limits store redis {url}: a new connection's handshake failed ({why});"
                " the pool keeps reconnecting",
                url=self._url,
                why=why,
            )


class RedisStore:
    """
    A L{LimitsStore} in a Redis server shared by every gateway that names it.

    A check goes straight to one of the pool's connected protocols (round
    robin), with its command's constant part encoded once per route's
    limits; txredisapi's handler, which waits for a free connection, is the
    way only while none is connected.  The protocol's own reply timeout
    (C{replyTimeout}, the same deadline) bounds the wait and drops a
    connection whose server stalls.
    """

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        *,
        url: str,
        timeout: float = 0.25,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._url = url
        self._timeout = timeout
        self._now = now or clock.seconds
        """Wall-clock time, for the quota's UTC windows."""
        self._connections = redis_pool_connections(client)
        self._next = 0
        self._prepared: dict[RouteLimits, tuple[bytes, ...]] = {}

    def _args(self, limits: RouteLimits) -> tuple[bytes, ...]:
        """
        The script's constant arguments for C{limits} (rate, burst, quota).
        """
        args = self._prepared.get(limits)
        if args is None:
            args = self._prepared[limits] = (
                repr(limits.rate or 0.0).encode(),
                str(limits.burst).encode(),
                str(limits.quota or 0).encode(),
            )
        return args

    async def check(self, key: str, limits: RouteLimits) -> Decision:
        now = self._now()
        base = key.encode()
        if limits.quota:
            start, end = quota_window(now, limits.quota_period)
            quota_key = b"%s:q:%d" % (base, start)
            window_left = end - now
        else:
            quota_key, window_left = base + b":q", 0.0
        keys_args = (base + b":b", quota_key, *self._args(limits), repr(window_left).encode())
        reply = await self._run(keys_args)
        try:
            if type(reply) is not str:
                raise TypeError("not a status line")
            refused, tokens, used, retry = reply.split(" ")
            return decision(
                limits, refused or None, float(tokens), int(used), window_left, float(retry)
            )
        except (TypeError, ValueError) as e:
            raise StoreUnavailable(f"unexpected reply from the script: {reply!r}") from e

    def _send(self, *command: bytes) -> Deferred[object]:
        connections = self._connections
        for _ in range(len(connections)):
            self._next = (self._next + 1) % len(connections)
            connection = connections[self._next]
            if connection.connected:
                # Bounded by the protocol's replyTimeout: no timer of our own.
                sent: Deferred[object] = connection.execute_command(*command)
                return sent
        # None connected (yet, or again): the handler waits for one, and the
        # deadline bounds that wait.
        return self._client.execute_command(*command).addTimeout(self._timeout, self._clock)

    async def _run(self, keys_args: tuple[bytes, ...]) -> object:
        import txredisapi

        try:
            try:
                return await self._send(b"EVALSHA", LUA_SHA_BYTES, b"2", *keys_args)
            except txredisapi.ResponseError as e:
                if not str(e).startswith("NOSCRIPT"):
                    raise
                # The server restarted or was flushed.  EVAL runs the script
                # and caches it there for the next EVALSHA.
                return await self._send(b"EVAL", LUA, b"2", *keys_args)
        except (CancelledError, TimeoutError):
            raise StoreUnavailable(f"no answer within {self._timeout}s") from None
        except txredisapi.RedisError as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from None
        except ConnectionError as e:
            raise StoreUnavailable(str(e) or type(e).__name__) from None

    async def close(self) -> None:
        await self._client.disconnect()

    def describe(self) -> str:
        return f"redis {self._url}"
