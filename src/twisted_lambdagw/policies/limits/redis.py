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

from ..._compat import redis_pool_retry_delays
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
-- Floats go back as strings: Redis would cut a Lua number to an integer.
return {refused, tostring(tokens), used, tostring(retry)}
"""
LUA_SHA = hashlib.sha1(LUA, usedforsecurity=False).hexdigest()
"""What EVALSHA names the script by (Redis's own choice of hash)."""


class RedisClient(Protocol):
    """The part of txredisapi's connection handler this store uses."""

    def evalsha(self, sha1_hash: str, keys: list[str], args: list[str]) -> Deferred[object]: ...

    def execute_command(self, *args: object) -> Deferred[object]: ...

    def disconnect(self) -> Deferred[object]: ...


def connect(
    config: StoreConfig, timeout: float, poolsize: int = 4, retry_max: float = 1.0
) -> RedisClient:
    """
    A lazy txredisapi pool for C{config}: it connects in the background and
    again whenever a connection is lost, at most C{retry_max} seconds apart.

    txredisapi takes the running reactor when it is imported, so it is
    imported here, once a reactor runs, never at module import.
    """
    import txredisapi  # type: ignore[import-untyped]

    client: RedisClient
    common = {
        "dbid": config.db,
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
    return client


class RedisStore:
    """
    A L{LimitsStore} in a Redis server shared by every gateway that names it.
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

    async def check(self, key: str, limits: RouteLimits) -> Decision:
        now = self._now()
        start, end = quota_window(now, limits.quota_period) if limits.quota else (0, 0)
        keys = [f"{key}:b", f"{key}:q:{start}"]
        args = [
            repr(limits.rate or 0.0),
            str(limits.burst),
            str(limits.quota or 0),
            repr(float(end - now) if limits.quota else 0.0),
        ]
        reply = await self._run(keys, args)
        try:
            if not isinstance(reply, list) or len(reply) != 4:
                raise TypeError("not a list of 4")
            refused, tokens, used, retry = reply
            return decision(
                limits,
                _text(refused) or None,
                float(_text(tokens)),
                int(_text(used)),
                end - now,
                float(_text(retry)),
            )
        except (TypeError, ValueError) as e:
            raise StoreUnavailable(f"unexpected reply from the script: {reply!r}") from e

    async def _run(self, keys: list[str], args: list[str]) -> object:
        import txredisapi

        attempt = self._client.evalsha(LUA_SHA, keys, args)
        try:
            try:
                return await self._deadline(attempt)
            except txredisapi.ScriptDoesNotExist:
                # NOSCRIPT: the server restarted or was flushed.  EVAL runs
                # the script and caches it there for the next EVALSHA.
                return await self._deadline(
                    self._client.execute_command("EVAL", LUA, len(keys), *keys, *args)
                )
        except (CancelledError, TimeoutError):
            raise StoreUnavailable(f"no answer within {self._timeout}s") from None
        except txredisapi.RedisError as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from None
        except ConnectionError as e:
            raise StoreUnavailable(str(e) or type(e).__name__) from None

    def _deadline(self, d: Deferred[object]) -> Deferred[object]:
        # Also bounds the wait for a free connection while none is up.
        return d.addTimeout(self._timeout, self._clock)

    async def close(self) -> None:
        await self._client.disconnect()

    def describe(self) -> str:
        return f"redis {self._url}"


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
