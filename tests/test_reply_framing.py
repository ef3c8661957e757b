"""
How a function's reply goes out on the wire, through the real site: bodiless
statuses, HEAD, reason phrases and each format's default Content-Type.
"""

from __future__ import annotations

from typing import Any

import pytest

from .gateway_fixtures import config_from
from .site_fixtures import SiteUnderTest


def site_for(fmt: str, result: Any) -> SiteUnderTest:
    """
    A gateway whose one route, in format C{fmt}, answers every request with C{result}.
    """
    config = config_from(f"[route:/lambda/]\naws_region = us-east-1\nformat = {fmt}\n")
    return SiteUnderTest({"fn": lambda event, context: result}, config=config)


Head = dict[bytes, list[bytes]]


def exchange(gw: SiteUnderTest, method: str = "GET") -> tuple[bytes, Head, bytes]:
    """
    One request on a fresh connection: the status line, headers by lower-cased
    name, and every byte after the head.
    """
    connection = gw.connect()
    connection.send(f"{method} /lambda/fn/x HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode())
    head, _, rest = connection.received.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers: Head = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status_line, headers, rest


PROXY_FORMATS = ["apigw-v1", "apigw-v2", "alb", "alb-multi"]


def proxy_reply(fmt: str, status: int, body: str, **extra: Any) -> dict[str, Any]:
    return {"statusCode": status, "body": body, **extra}


def httpjson_reply(status: int, body: str) -> dict[str, Any]:
    return {"type": "HTTPJSON-REP", "meta": {"status": status}, "body": body}


def reply_in(fmt: str, status: int, body: str) -> dict[str, Any]:
    if fmt == "httpjson":
        return httpjson_reply(status, body)
    return proxy_reply(fmt, status, body)


class BodilessStatusTests:
    @pytest.mark.parametrize("fmt", ["httpjson", *PROXY_FORMATS])
    @pytest.mark.parametrize("status", [204, 304])
    def test_no_body_no_length(self, fmt: str, status: int) -> None:
        """A 204 or 304 with a body goes out with neither body nor Content-Length."""
        status_line, headers, rest = exchange(site_for(fmt, reply_in(fmt, status, "dropped")))
        assert status_line.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"content-length" not in headers
        assert b"transfer-encoding" not in headers
        assert rest == b""

    @pytest.mark.parametrize("fmt", ["httpjson", *PROXY_FORMATS])
    def test_head_no_body(self, fmt: str) -> None:
        """A HEAD answer has the length a GET would have, and no body."""
        status_line, headers, rest = exchange(site_for(fmt, reply_in(fmt, 200, "hello")), "HEAD")
        assert status_line.startswith(b"HTTP/1.1 200 ")
        assert headers[b"content-length"] == [b"5"]
        assert rest == b""

    def test_get_has_body(self) -> None:
        """The same reply to a GET carries its body: the HEAD test can tell."""
        _, headers, rest = exchange(site_for("apigw-v1", proxy_reply("apigw-v1", 200, "hello")))
        assert (headers[b"content-length"], rest) == ([b"5"], b"hello")


class DefaultContentTypeTests:
    @pytest.mark.parametrize(
        ("fmt", "expected"),
        [
            ("httpjson", b"application/json"),
            ("apigw-v1", b"application/json"),
            ("apigw-v2", b"application/json"),
            ("alb", b"application/octet-stream"),
            ("alb-multi", b"application/octet-stream"),
        ],
    )
    def test_never_text_html(self, fmt: str, expected: bytes) -> None:
        """A reply naming no Content-Type gets its format's default, never text/html."""
        _, headers, rest = exchange(site_for(fmt, reply_in(fmt, 200, "<script>1</script>")))
        assert headers[b"content-type"] == [expected]
        assert rest == b"<script>1</script>"

    @pytest.mark.parametrize("fmt", PROXY_FORMATS)
    def test_function_type_kept(self, fmt: str) -> None:
        """A Content-Type the function names is the only one."""
        headers_key = "multiValueHeaders" if fmt == "alb-multi" else "headers"
        value: Any = ["text/plain"] if fmt == "alb-multi" else "text/plain"
        result = proxy_reply(fmt, 200, "hi", **{headers_key: {"Content-Type": value}})
        _, headers, _ = exchange(site_for(fmt, result))
        assert headers[b"content-type"] == [b"text/plain"]


class StatusLineTests:
    @pytest.mark.parametrize("fmt", ["alb", "alb-multi"])
    def test_alb_description_is_reason(self, fmt: str) -> None:
        """ALB's statusDescription is the reason phrase, as ALB sends it."""
        result = proxy_reply(fmt, 200, "x", statusDescription="200 Fine By Me")
        status_line, _, _ = exchange(site_for(fmt, result))
        assert status_line == b"HTTP/1.1 200 Fine By Me"

    def test_alb_description_split_refused(self) -> None:
        """A description with CR/LF is a 502, never a split response."""
        result = proxy_reply("alb", 200, "x", statusDescription="200 OK\r\nX-Evil: 1")
        status_line, headers, _ = exchange(site_for("alb", result))
        assert status_line.startswith(b"HTTP/1.1 502 ")
        assert b"x-evil" not in headers

    def test_v1_description_not_used(self) -> None:
        """API Gateway has no statusDescription: the standard reason is sent."""
        result = proxy_reply("apigw-v1", 200, "x", statusDescription="200 Fine By Me")
        assert exchange(site_for("apigw-v1", result))[0] == b"HTTP/1.1 200 OK"

    def test_v1_numeric_string_status(self) -> None:
        """A REST reply's statusCode "201" is a 201."""
        result = proxy_reply("apigw-v1", "201", "x")  # type: ignore[arg-type]
        assert exchange(site_for("apigw-v1", result))[0] == b"HTTP/1.1 201 Created"

    @pytest.mark.parametrize("fmt", ["alb", "alb-multi", "apigw-v2"])
    def test_numeric_string_status_refused(self, fmt: str) -> None:
        """ALB and payload 2.0 do not take a string statusCode: a 502, as from AWS."""
        result = proxy_reply(fmt, "200", "x")  # type: ignore[arg-type]
        assert exchange(site_for(fmt, result))[0].startswith(b"HTTP/1.1 502 ")

    def test_httpjson_zero_status(self) -> None:
        """An httpjson reply with status 0 (Go's zero value) is a 200, as in the original."""
        assert exchange(site_for("httpjson", httpjson_reply(0, "x")))[0] == b"HTTP/1.1 200 OK"
