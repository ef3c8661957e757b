"""
Tests for the ALB event formats, alb (single-value) and alb-multi.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.formats import FORMATS, EventFormat, alb, alb_multi
from twisted_lambdagw.core.messages import IncomingRequest, Reply

from .request_factory import make_request

GATEWAY_HEADERS = (
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-request-id",
)


def event_of(fmt: EventFormat, request: IncomingRequest) -> dict[str, Any]:
    """
    The event a format builds, as the function would receive it.
    """
    document = json.loads(fmt.build(request))
    assert isinstance(document, dict)
    return document


def reply_of(fmt: EventFormat, result: object) -> Reply:
    """
    The reply a format makes of a function's result.
    """
    return fmt.parse(json.dumps(result).encode("utf-8"))


class RegistryTests:
    def test_registered(self) -> None:
        """alb and alb-multi are registered under their config names."""
        assert FORMATS["alb"] is alb
        assert FORMATS["alb-multi"] is alb_multi


class SingleValueRequestTests:
    def test_fields(self) -> None:
        """The event has the ALB fields and only the single-value ones."""
        event = event_of(alb, make_request("DELETE", "/items/1"))
        assert event["requestContext"] == {
            "elb": {
                "targetGroupArn": (
                    "arn:aws:elasticloadbalancing:local:000000000000"
                    ":targetgroup/lambdagw/0000000000000000"
                )
            }
        }
        assert event["httpMethod"] == "DELETE"
        assert event["path"] == "/items/1"
        assert event["queryStringParameters"] == {}
        assert "multiValueHeaders" not in event
        assert "multiValueQueryStringParameters" not in event

    def test_empty_body(self) -> None:
        """An empty body is an empty string, not null."""
        event = event_of(alb, make_request())
        assert event["body"] == ""
        assert event["isBase64Encoded"] is False

    def test_gateway_headers(self) -> None:
        """Host, x-forwarded-* and x-request-id reach the function."""
        headers = event_of(alb, make_request())["headers"]
        for name in GATEWAY_HEADERS:
            assert name in headers

    def test_headers_last_value_lowercase(self) -> None:
        """Header names are lower-case and a repeated header keeps its last value."""
        request = make_request(headers=[("X-Tag", "1"), ("x-tag", "2"), ("Cookie", "a=1; b=2")])
        headers = event_of(alb, request)["headers"]
        assert headers["x-tag"] == "2"
        assert headers["cookie"] == "a=1; b=2"
        assert all(name == name.lower() for name in headers)

    def test_query_last_value_undecoded(self) -> None:
        """Query values keep their last value, still URL-encoded."""
        request = make_request(query="q=caf%C3%A9&q=a+b&k%20x=%2F&flag")
        event = event_of(alb, request)
        assert event["queryStringParameters"] == {"q": "a+b", "k%20x": "%2F", "flag": ""}

    def test_path_raw_and_stripped(self) -> None:
        """path is the function's path, still percent-encoded."""
        request = make_request(path="/lambda/fn/a%20b", function_path="/a%20b")
        assert event_of(alb, request)["path"] == "/a%20b"

    @pytest.mark.parametrize(
        "content_type",
        [
            "text/html",
            "text/plain; charset=utf-8",
            "application/json",
            "Application/JavaScript",
            "application/xml",
        ],
    )
    def test_text_body(self, content_type: str) -> None:
        """Bodies of the types ALB documents as text travel as they are."""
        request = make_request("POST", headers=[("Content-Type", content_type)], body="é".encode())
        event = event_of(alb, request)
        assert (event["body"], event["isBase64Encoded"]) == ("é", False)

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/octet-stream", b"abc"),
            ("text/plain", b"\xc3\x28"),
            (None, b"x"),
            ("application/x-www-form-urlencoded", b"a=1&b=2"),
            ("application/vnd.api+json", b"{}"),
        ],
    )
    def test_binary_body(self, content_type: str | None, body: bytes) -> None:
        """Other content types or invalid UTF-8 travel as base64."""
        headers = [] if content_type is None else [("Content-Type", content_type)]
        event = event_of(alb, make_request("POST", headers=headers, body=body))
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == body


class MultiValueRequestTests:
    def test_fields(self) -> None:
        """The event has only the multi-value header and query fields."""
        event = event_of(alb_multi, make_request())
        assert "headers" not in event
        assert "queryStringParameters" not in event
        assert event["multiValueQueryStringParameters"] == {}
        assert event["requestContext"]["elb"]["targetGroupArn"].startswith(
            "arn:aws:elasticloadbalancing:local:"
        )
        assert event["body"] == ""

    def test_gateway_headers(self) -> None:
        """Host, x-forwarded-* and x-request-id reach the function."""
        headers = event_of(alb_multi, make_request())["multiValueHeaders"]
        for name in GATEWAY_HEADERS:
            assert len(headers[name]) == 1

    def test_headers_all_values_lowercase(self) -> None:
        """Every value of a repeated header is kept, under its lower-case name."""
        request = make_request(headers=[("X-Tag", "1"), ("x-TAG", "2")])
        assert event_of(alb_multi, request)["multiValueHeaders"]["x-tag"] == ["1", "2"]

    def test_query_all_values_undecoded(self) -> None:
        """Every value of a repeated key is kept, still URL-encoded."""
        request = make_request(query="q=caf%C3%A9&q=a+b&r=1")
        event = event_of(alb_multi, request)
        assert event["multiValueQueryStringParameters"] == {"q": ["caf%C3%A9", "a+b"], "r": ["1"]}


@pytest.fixture(params=["alb", "alb-multi"])
def fmt(request: pytest.FixtureRequest) -> EventFormat:
    """
    Each ALB format: both parse replies the same way.
    """
    return FORMATS[request.param]


class ReplyTests:
    def test_headers(self, fmt: EventFormat) -> None:
        """A single-value reply's headers are used."""
        reply = reply_of(
            fmt,
            {
                "statusCode": 200,
                "statusDescription": "200 OK",
                "headers": {"content-type": "text/plain"},
                "body": "hi",
                "isBase64Encoded": False,
            },
        )
        assert reply == Reply(200, (("content-type", "text/plain"),), b"hi", "OK")

    def test_multi_value_headers(self, fmt: EventFormat) -> None:
        """A multi-value reply's headers are used, one line per value."""
        reply = reply_of(
            fmt, {"statusCode": 302, "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]}}
        )
        assert reply.headers == (
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("Content-Type", "application/octet-stream"),
        )

    def test_both_fields(self, fmt: EventFormat) -> None:
        """With both fields, multi-value wins for a name in both and nothing doubles."""
        reply = reply_of(
            fmt,
            {
                "statusCode": 200,
                "headers": {"x-a": "1", "x-b": "2"},
                "multiValueHeaders": {"x-a": ["1"], "x-c": ["3", "4"]},
            },
        )
        assert sorted(reply.headers) == [
            ("Content-Type", "application/octet-stream"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-c", "3"),
            ("x-c", "4"),
        ]

    def test_status_description_other_code(self, fmt: EventFormat) -> None:
        """A statusDescription naming another code changes neither status nor reason."""
        reply = reply_of(fmt, {"statusCode": 404, "statusDescription": "200 OK"})
        assert (reply.status, reply.reason) == (404, None)

    @pytest.mark.parametrize(
        ("description", "reason"),
        [
            ("200 Fine By Me", "Fine By Me"),
            ("200 OK", "OK"),
            ("Fine By Me", "Fine By Me"),
            ("200", None),
            ("", None),
            (None, None),
            ("200 caf\u00e9\tok", "caf\u00e9\tok"),
        ],
    )
    def test_status_description_reason(
        self, fmt: EventFormat, description: str | None, reason: str | None
    ) -> None:
        """statusDescription is the status line's reason phrase, as ALB sends it."""
        reply = reply_of(fmt, {"statusCode": 200, "statusDescription": description})
        assert (reply.status, reply.reason) == (200, reason)

    @pytest.mark.parametrize(
        "description", ["200 OK\r\nX-Evil: 1", "200 OK\n", "200 \x00", "200 \u2603", 200, ["OK"]]
    )
    def test_status_description_refused(self, fmt: EventFormat, description: object) -> None:
        """A description that is not a string of reason-phrase characters is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(fmt, {"statusCode": 200, "statusDescription": description})

    def test_default_content_type(self, fmt: EventFormat) -> None:
        """Without a Content-Type the reply is application/octet-stream, as from ALB."""
        reply = reply_of(fmt, {"statusCode": 200, "body": "<b>hi</b>"})
        assert reply.headers == (("Content-Type", "application/octet-stream"),)

    @pytest.mark.parametrize("status", [204, 304])
    def test_no_content_no_default_type(self, fmt: EventFormat, status: int) -> None:
        """A 204 or 304 gets no default Content-Type: it has no content."""
        assert reply_of(fmt, {"statusCode": status}).headers == ()

    def test_status_required(self, fmt: EventFormat) -> None:
        """A result without statusCode is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(fmt, {"statusDescription": "200 OK", "body": ""})

    @pytest.mark.parametrize("status", [0, 99, 600, "500"])
    def test_status_range(self, fmt: EventFormat, status: object) -> None:
        """A status outside the HTTP range is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(fmt, {"statusCode": status})

    def test_base64(self, fmt: EventFormat) -> None:
        """isBase64Encoded bodies are decoded."""
        body = base64.b64encode(b"\xff\xd8\xff").decode()
        reply = reply_of(fmt, {"statusCode": 200, "body": body, "isBase64Encoded": True})
        assert reply.body == b"\xff\xd8\xff"

    def test_header_injection(self, fmt: EventFormat) -> None:
        """A header value with CR/LF is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(fmt, {"statusCode": 200, "multiValueHeaders": {"x": ["a\r\nb: c"]}})
