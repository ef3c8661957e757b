"""
L{IncomingRequest} values for tests, with the gateway's headers already added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from twisted_lambdagw.core.messages import IncomingRequest

REQUEST_TIME = 1583348638.390
"""Wed, 04 Mar 2020 19:03:58.390 UTC: a fixed arrival time."""


def make_request(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    function_path: str | None = None,
    host: str = "gw.example.test:8080",
    remote_addr: str = "192.0.2.10",
    scheme: str = "http",
    server_port: int = 8080,
    request_id: str = "req-0001",
    protocol: str = "HTTP/1.1",
    time: float = REQUEST_TIME,
    route_prefix: str = "/",
    function_name: str = "fn",
    user: str | None = None,
) -> IncomingRequest:
    """
    One request as the gateway would hand it to a format.

    C{path} and C{function_path} are percent-encoded; the function sees
    C{path} unless C{function_path} says otherwise (strip_path_prefix).  The
    gateway's C{host}, C{x-forwarded-*} and C{x-request-id} headers come
    first, then C{headers}.
    """
    if function_path is None:
        function_path = path
    gateway = (
        ("host", host),
        ("x-forwarded-for", remote_addr),
        ("x-forwarded-proto", scheme),
        ("x-forwarded-port", str(server_port)),
        ("x-request-id", request_id),
    )
    return IncomingRequest(
        request_id=request_id,
        method=method,
        raw_path=path,
        path=unquote(path),
        function_raw_path=function_path,
        function_path=unquote(function_path),
        raw_query=query,
        headers=(*gateway, *headers),
        body=body,
        protocol=protocol,
        scheme=scheme,
        host=host,
        remote_addr=remote_addr,
        server_port=server_port,
        time=time,
        route_prefix=route_prefix,
        function_name=function_name,
        user=user,
    )


FIELD_DEFAULTS: dict[str, Any] = {
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


def request_from_fields(**fields: Any) -> IncomingRequest:
    """
    An IncomingRequest with every field given or defaulted, nothing added:
    for tests that pin the exact headers a format sees.
    """
    unknown = set(fields) - set(FIELD_DEFAULTS)
    if unknown:
        raise TypeError(f"not IncomingRequest fields: {sorted(unknown)}")
    return IncomingRequest(**{**FIELD_DEFAULTS, **fields})
