"""
The C{rate_*} and C{quota} keys of a route and C{limits_store*} of C{[gateway]}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from .._keys import ConfigKeys

_RATE = re.compile(r"(?P<count>[0-9]+)\s*/\s*(?P<unit>s|m|h)")
_QUOTA = re.compile(r"(?P<count>[0-9]+)\s*/\s*(?P<unit>h|day|month)")
_RATE_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
KEY_KINDS = ("route", "client", "user", "header")
LIMIT_KEYS = frozenset({"rate_limit", "rate_burst", "rate_key", "quota"})
STORE_KEYS = frozenset({"limits_store", "limits_store_down"})
STORE_DOWN = ("allow", "deny")


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """
    A route's rate limit (token bucket) and quota (fixed windows), one key.
    """

    rate: float | None = None
    """Tokens added per second, or None for no rate limit."""
    rate_text: str = ""
    """As configured, e.g. C{50/s}, for C{lambdagw check}."""
    burst: int = 0
    """The bucket's size."""
    quota: int | None = None
    quota_period: str = "day"
    """C{h}, C{day} or C{month}: fixed UTC windows."""
    key: str = "route"
    """C{route}, C{client}, C{user} or C{header}."""
    header: bytes = b""
    """The header's lower-case name when C{key} is C{header}."""

    @property
    def key_label(self) -> str:
        return f"header:{self.header.decode('ascii')}" if self.key == "header" else self.key


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """
    Where the limits' counters live: this process, or a Redis server.
    """

    kind: str = "memory"
    """C{memory} or C{redis}."""
    url: str = "memory"
    """As configured, without the password, for logs and C{lambdagw check}."""
    host: str = ""
    port: int = 6379
    unix_path: str | None = None
    db: int = 0
    tls: bool = False
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    down: str = "allow"
    """C{allow} or C{deny}: what a request gets when the store cannot answer."""


def parse_route_limits(s: ConfigKeys, auth: str) -> RouteLimits | None:
    """
    The route's limits, or None when it has none.  C{auth} is the route's auth mode.
    """
    if not any(s.text(key) for key in LIMIT_KEYS):
        return None
    rate_text = s.text("rate_limit")
    quota_text = s.text("quota")
    if rate_text is None and quota_text is None:
        key = next(k for k in ("rate_burst", "rate_key") if s.text(k))
        raise s.error(key, "needs rate_limit or quota")
    rate = None
    burst = 0
    if rate_text is not None:
        match = _RATE.fullmatch(rate_text)
        if match is None or int(match["count"]) < 1:
            raise s.error("rate_limit", f"not a rate like 50/s, 100/m, 1000/h: {rate_text!r}")
        count = int(match["count"])
        rate = count / _RATE_SECONDS[match["unit"]]
        burst = s.integer("rate_burst", count)
    elif s.text("rate_burst"):
        raise s.error("rate_burst", "needs rate_limit")
    quota = None
    period = "day"
    if quota_text is not None:
        match = _QUOTA.fullmatch(quota_text)
        if match is None or int(match["count"]) < 1:
            raise s.error(
                "quota", f"not a quota like 1000/h, 10000/day, 1000000/month: {quota_text!r}"
            )
        quota, period = int(match["count"]), match["unit"]
    key_text = s.text("rate_key", "route")
    assert key_text is not None
    header = b""
    if key_text.startswith("header:"):
        name = key_text[len("header:") :]
        if not _HEADER_NAME.fullmatch(name):
            raise s.error("rate_key", f"not a header name: {name!r}")
        key, header = "header", name.lower().encode("ascii")
    elif key_text in ("route", "client", "user"):
        key = key_text
    else:
        raise s.error("rate_key", f"must be route, client, user or header:NAME, not {key_text!r}")
    if key == "user" and auth == "none":
        raise s.error("rate_key", "'user' needs an authorized route (auth is none)")
    return RouteLimits(
        rate=rate,
        rate_text=rate_text or "",
        burst=burst,
        quota=quota,
        quota_period=period,
        key=key,
        header=header,
    )


def parse_store(s: ConfigKeys) -> StoreConfig | None:
    """
    C{[gateway] limits_store} and C{limits_store_down}; None when neither is set.
    """
    if s.text("limits_store") is None and s.text("limits_store_down") is None:
        return None
    down = s.choice("limits_store_down", STORE_DOWN, "allow")
    text = s.text("limits_store", "memory")
    assert text is not None
    if text == "memory":
        return StoreConfig(down=down)
    bad = s.error(
        "limits_store",
        "must be memory, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH?db=N,"
        f" not {_without_password(text)!r}",
    )
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        raise bad from None
    if url.fragment:
        raise bad
    username = unquote(url.username) if url.username else None
    password = unquote(url.password) if url.password is not None else None
    if url.scheme in ("redis", "rediss"):
        db_text = url.path.strip("/") or "0"
        if not url.hostname or url.query or not db_text.isdigit():
            raise bad
        db = int(db_text)
        return StoreConfig(
            kind="redis",
            url=_without_password(text),
            host=url.hostname,
            port=port or 6379,
            db=db,
            tls=url.scheme == "rediss",
            password=password,
            username=username,
            down=down,
        )
    if url.scheme == "unix":
        query = parse_qs(url.query, keep_blank_values=True)
        dbs = query.pop("db", ["0"])
        if (
            url.netloc
            or not url.path.startswith("/")
            or query
            or len(dbs) != 1
            or not dbs[0].isdigit()
        ):
            raise bad
        return StoreConfig(
            kind="redis",
            url=_without_password(text),
            unix_path=url.path,
            db=int(dbs[0]),
            password=password,
            down=down,
        )
    raise bad


def _without_password(text: str) -> str:
    """
    The URL as written, its password (if any) masked: it goes into logs.
    """
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", text)
