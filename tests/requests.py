"""
Requests for format tests: a complete L{IncomingRequest} with plain defaults.
"""

from __future__ import annotations

from typing import Any

from twisted_lambdagw.messages import IncomingRequest

DEFAULTS: dict[str, Any] = {
    "request_id": "req-1",
    "method": "GET",
    "raw_path": "/lambda/hello/a%20b",
    "path": "/lambda/hello/a b",
    "function_raw_path": "/lambda/hello/a%20b",
    "function_path": "/lambda/hello/a b",
    "raw_query": "x=1&y=2",
    "headers": (("Host", "example.com"), ("Accept", "*/*")),
    "body": b"",
    "protocol": "HTTP/1.1",
    "scheme": "http",
    "host": "example.com",
    "remote_addr": "127.0.0.1",
    "server_port": 8080,
    "time": 1_700_000_000.0,
    "route_prefix": "/lambda/",
    "function_name": "hello",
    "user": None,
}


def make_request(**fields: Any) -> IncomingRequest:
    """
    An IncomingRequest with every field defaulted; ``fields`` override them.
    """
    unknown = set(fields) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"not IncomingRequest fields: {sorted(unknown)}")
    return IncomingRequest(**{**DEFAULTS, **fields})
