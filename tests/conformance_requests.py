"""
A varied set of requests, and the events every format builds for them: what
the conformance tests hold up against AWS's captured events and against
consumers in other languages.
"""

from __future__ import annotations

import json
from typing import Any

from twisted_lambdagw.core.formats import FORMATS
from twisted_lambdagw.core.messages import IncomingRequest

from .request_factory import make_request

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
"""Bytes that are not UTF-8."""

REQUESTS: dict[str, IncomingRequest] = {
    "get-bare": make_request("GET", "/"),
    "get-query-repeated": make_request(
        "GET",
        "/items/42",
        "x=1&x=2&y=a%20b&flag&plus=c+d",
        [("User-Agent", "curl/8"), ("Accept", "*/*")],
    ),
    "post-json-cookies": make_request(
        "POST",
        "/orders",
        "",
        [
            ("Content-Type", "application/json"),
            ("Cookie", "session=abc; theme=dark"),
            ("Cookie", "lang=en"),
            ("User-Agent", "Mozilla/5.0"),
        ],
        b'{"item": "tea", "count": 2}',
    ),
    "put-binary": make_request("PUT", "/upload/img.png", "", [("Content-Type", "image/png")], PNG),
    "put-not-utf8-text": make_request(
        "PUT", "/notes/1", "", [("Content-Type", "text/plain")], b"caf\xe9"
    ),
    "patch-multi-value-headers": make_request(
        "PATCH",
        "/a%20b/c",
        "q=%E2%9C%93",
        [("X-Multi", "one"), ("x-multi", "two"), ("Accept", "text/html"), ("Accept", "*/*")],
        b"plain",
    ),
    "delete-form-authenticated": make_request(
        "DELETE",
        "/items/7",
        "",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"reason=gone&by=me",
        user="alice",
    ),
    "head": make_request("HEAD", "/health", "verbose"),
    "options-http2": make_request(
        "OPTIONS", "/", "", [("Origin", "https://example.com")], protocol="HTTP/2"
    ),
}
"""Requests by label: methods, queries with repeated and bare keys, cookies,
binary and text bodies, no body, multi-value headers, an authenticated user."""


def event(fmt: str, request: IncomingRequest) -> dict[str, Any]:
    """
    The event format C{fmt} builds for C{request}, decoded.
    """
    document = json.loads(FORMATS[fmt].build(request))
    assert isinstance(document, dict)
    return document


def events(fmt: str) -> dict[str, dict[str, Any]]:
    """
    The event format C{fmt} builds for each of L{REQUESTS}, by label.
    """
    return {label: event(fmt, request) for label, request in REQUESTS.items()}
