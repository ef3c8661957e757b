"""
Tests for the API Gateway event formats, apigw-v1 (REST) and apigw-v2 (HTTP API, Function URL).
"""

from __future__ import annotations

import base64
import json
from email.utils import formatdate
from typing import Any

import pytest

from twisted_lambdagw.core.config import FORMAT_NAMES
from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.formats import FORMATS, EventFormat, apigw_v1, apigw_v2
from twisted_lambdagw.core.formats._common import request_time
from twisted_lambdagw.core.messages import IncomingRequest, Reply

from .request_factory import REQUEST_TIME, make_request

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
    def test_every_config_name_has_a_format(self) -> None:
        """Every format name the config accepts is registered, and nothing else."""
        assert set(FORMATS) == set(FORMAT_NAMES)

    def test_standard_formats(self) -> None:
        """The standard formats are registered under their config names."""
        assert FORMATS["apigw-v1"] is apigw_v1
        assert FORMATS["apigw-v2"] is apigw_v2


class RequestTimeTests:
    @pytest.mark.parametrize("month", range(1, 13))
    def test_english_months_in_utc(self, month: int) -> None:
        """Timestamps use English month names whatever the locale, in UTC."""
        seconds = 1577836800.0 + (month - 1) * 31 * 86400 + 3661.5
        # formatdate builds "Wed, 04 Mar 2020 19:03:58 GMT" from its own table.
        _, day, name, year, clock, _ = formatdate(seconds, usegmt=True).split()
        assert request_time(seconds) == f"{day}/{name}/{year}:{clock} +0000"

    def test_example(self) -> None:
        """The fixed request time formats as API Gateway shows it."""
        assert request_time(REQUEST_TIME) == "04/Mar/2020:19:03:58 +0000"


class V1RequestTests:
    def test_top_level_fields(self) -> None:
        """Every top-level field is present, null where API Gateway sends null."""
        event = event_of(apigw_v1, make_request("GET", "/items/42"))
        assert event["resource"] == "/{proxy+}"
        assert event["path"] == "/items/42"
        assert event["httpMethod"] == "GET"
        assert event["pathParameters"] == {"proxy": "items/42"}
        assert event["stageVariables"] is None
        assert event["queryStringParameters"] is None
        assert event["multiValueQueryStringParameters"] is None
        assert event["body"] is None
        assert event["isBase64Encoded"] is False
        assert "version" not in event

    def test_gateway_headers(self) -> None:
        """Host, x-forwarded-* and x-request-id reach the function."""
        event = event_of(apigw_v1, make_request())
        for name in GATEWAY_HEADERS:
            assert name in event["headers"]
            assert name in event["multiValueHeaders"]
        assert event["headers"]["x-forwarded-for"] == "192.0.2.10"

    def test_headers_last_value_and_all_values(self) -> None:
        """headers keeps the last value, multiValueHeaders every value, in the client's case."""
        request = make_request(headers=[("Accept", "a/b"), ("X-Tag", "1"), ("x-tag", "2")])
        event = event_of(apigw_v1, request)
        assert event["headers"]["Accept"] == "a/b"
        assert event["headers"]["X-Tag"] == "2"
        assert "x-tag" not in event["headers"]
        assert event["multiValueHeaders"]["X-Tag"] == ["1", "2"]
        assert event["multiValueHeaders"]["Accept"] == ["a/b"]

    def test_cookie_header_stays(self) -> None:
        """REST events carry cookies in the Cookie header itself."""
        event = event_of(apigw_v1, make_request(headers=[("Cookie", "a=1; b=2")]))
        assert event["headers"]["Cookie"] == "a=1; b=2"

    def test_query_decoded(self) -> None:
        """Query values are URL-decoded: last value single, every value multi."""
        request = make_request(query="a=1&a=2&b=x%20y&c=caf%C3%A9&d=1+2&e")
        event = event_of(apigw_v1, request)
        assert event["queryStringParameters"] == {
            "a": "2",
            "b": "x y",
            "c": "café",
            "d": "1 2",
            "e": "",
        }
        assert event["multiValueQueryStringParameters"] == {
            "a": ["1", "2"],
            "b": ["x y"],
            "c": ["café"],
            "d": ["1 2"],
            "e": [""],
        }

    def test_query_keys_case_sensitive(self) -> None:
        """Query keys that differ in case are different keys."""
        event = event_of(apigw_v1, make_request(query="k=1&K=2"))
        assert event["multiValueQueryStringParameters"] == {"k": ["1"], "K": ["2"]}

    def test_path_encoded_proxy_decoded(self) -> None:
        """path stays percent-encoded as REST sends it; the proxy parameter is decoded."""
        event = event_of(apigw_v1, make_request(path="/a%20b/caf%C3%A9"))
        assert event["path"] == "/a%20b/caf%C3%A9"
        assert event["requestContext"]["path"] == "/a%20b/caf%C3%A9"
        assert event["pathParameters"] == {"proxy": "a b/café"}

    def test_root_path_has_no_parameters(self) -> None:
        """The root path matches no {proxy+}: pathParameters is null."""
        event = event_of(apigw_v1, make_request(path="/"))
        assert event["pathParameters"] is None

    def test_stripped_path(self) -> None:
        """With strip_path_prefix the function sees only the path below the prefix."""
        request = make_request(path="/api/fn/items/1", function_path="/items/1")
        event = event_of(apigw_v1, request)
        assert event["path"] == "/items/1"
        assert event["pathParameters"] == {"proxy": "items/1"}

    def test_request_context(self) -> None:
        """requestContext carries ids, times, identity, stage and domain."""
        request = make_request(
            "POST", "/x", headers=[("User-Agent", "curl/8")], request_id="rid-7", protocol="HTTP/2"
        )
        context = event_of(apigw_v1, request)["requestContext"]
        assert context["requestId"] == "rid-7"
        assert context["extendedRequestId"] == "rid-7"
        assert context["requestTime"] == "04/Mar/2020:19:03:58 +0000"
        assert context["requestTimeEpoch"] == 1583348638390
        assert context["identity"]["sourceIp"] == "192.0.2.10"
        assert context["identity"]["userAgent"] == "curl/8"
        assert context["identity"]["user"] is None
        assert context["stage"] == "$default"
        assert context["protocol"] == "HTTP/2"
        assert context["domainName"] == "gw.example.test"
        assert context["domainPrefix"] == "gw"
        assert context["httpMethod"] == "POST"
        assert context["resourcePath"] == "/{proxy+}"
        assert context["accountId"] == "000000000000"
        assert "authorizer" not in context

    def test_authorizer_user(self) -> None:
        """An authenticated user is the authorizer's principalId, as a Lambda authorizer's."""
        context = event_of(apigw_v1, make_request(user="alice"))["requestContext"]
        assert context["authorizer"] == {"principalId": "alice", "integrationLatency": 0}

    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain; charset=utf-8",
            "application/json",
            "application/xml",
            "application/javascript",
            "application/x-www-form-urlencoded",
            "application/problem+json",
            "application/atom+xml",
        ],
    )
    def test_text_body(self, content_type: str) -> None:
        """Textual content types that are valid UTF-8 travel as they are."""
        request = make_request(
            "POST", headers=[("Content-Type", content_type)], body="é=1".encode()
        )
        event = event_of(apigw_v1, request)
        assert event["body"] == "é=1"
        assert event["isBase64Encoded"] is False

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("image/png", b"\x89PNG\r\n"),
            ("application/octet-stream", b"plain ascii"),
            (None, b"no type"),
            ("text/plain", b"\xff\xfe not utf-8"),
            ("multipart/form-data; boundary=x", b"--x--"),
        ],
    )
    def test_binary_body(self, content_type: str | None, body: bytes) -> None:
        """Other content types, no content type, or invalid UTF-8 travel as base64."""
        headers = [] if content_type is None else [("Content-Type", content_type)]
        event = event_of(apigw_v1, make_request("POST", headers=headers, body=body))
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == body


class V2RequestTests:
    def test_top_level_fields(self) -> None:
        """Every field of a Function URL event is present."""
        event = event_of(apigw_v2, make_request("GET", "/items/42"))
        assert event["version"] == "2.0"
        assert event["routeKey"] == "$default"
        assert event["rawPath"] == "/items/42"
        assert event["rawQueryString"] == ""
        # Left out, as AWS leaves them out, when there is nothing to say.
        for key in ("cookies", "queryStringParameters", "pathParameters", "stageVariables", "body"):
            assert key not in event
        assert event["isBase64Encoded"] is False

    def test_gateway_headers(self) -> None:
        """Host, x-forwarded-* and x-request-id reach the function."""
        event = event_of(apigw_v2, make_request())
        for name in GATEWAY_HEADERS:
            assert name in event["headers"]
        assert event["headers"]["x-forwarded-proto"] == "http"

    def test_headers_lowercase_comma_joined(self) -> None:
        """Header names are lower-cased and repeated values joined with commas."""
        request = make_request(headers=[("Accept", "a/b"), ("X-Tag", "1"), ("x-TAG", "2")])
        headers = event_of(apigw_v2, request)["headers"]
        assert headers["accept"] == "a/b"
        assert headers["x-tag"] == "1,2"
        assert all(name == name.lower() for name in headers)

    def test_cookies_split_and_removed(self) -> None:
        """Cookie headers become one cookies entry per cookie and leave headers."""
        request = make_request(headers=[("Cookie", "a=1; b=2"), ("cookie", "c=3;")])
        event = event_of(apigw_v2, request)
        assert event["cookies"] == ["a=1", "b=2", "c=3"]
        assert "cookie" not in event["headers"]

    def test_query(self) -> None:
        """rawQueryString is the query as sent; queryStringParameters decoded and comma-joined."""
        request = make_request(query="a=1&a=2&c=caf%C3%A9&d=1+2")
        event = event_of(apigw_v2, request)
        assert event["rawQueryString"] == "a=1&a=2&c=caf%C3%A9&d=1+2"
        assert event["queryStringParameters"] == {"a": "1,2", "c": "café", "d": "1 2"}

    def test_raw_path(self) -> None:
        """rawPath and requestContext.http.path are the function's path, still encoded."""
        request = make_request(path="/api/fn/a%2Fb", function_path="/a%2Fb")
        event = event_of(apigw_v2, request)
        assert event["rawPath"] == "/a%2Fb"
        assert event["requestContext"]["http"]["path"] == "/a%2Fb"

    def test_request_context(self) -> None:
        """requestContext carries http, ids, times, stage and domain."""
        request = make_request("PUT", "/x", headers=[("User-Agent", "curl/8")], request_id="r-9")
        context = event_of(apigw_v2, request)["requestContext"]
        assert context["http"] == {
            "method": "PUT",
            "path": "/x",
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.10",
            "userAgent": "curl/8",
        }
        assert context["requestId"] == "r-9"
        assert context["routeKey"] == "$default"
        assert context["stage"] == "$default"
        assert context["time"] == "04/Mar/2020:19:03:58 +0000"
        assert context["timeEpoch"] == 1583348638390
        assert context["domainName"] == "gw.example.test"
        assert "authentication" not in context
        assert "authorizer" not in context

    def test_no_user_agent(self) -> None:
        """Without a User-Agent the field is an empty string, never missing."""
        context = event_of(apigw_v2, make_request())["requestContext"]
        assert context["http"]["userAgent"] == ""

    def test_authorizer_user(self) -> None:
        """An authenticated user is in the authorizer's lambda context."""
        context = event_of(apigw_v2, make_request(user="bob"))["requestContext"]
        assert context["authorizer"] == {"lambda": {"principalId": "bob"}}

    def test_binary_body(self) -> None:
        """A binary body is base64 with isBase64Encoded."""
        request = make_request("POST", headers=[("Content-Type", "image/png")], body=b"\x00\xff")
        event = event_of(apigw_v2, request)
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == b"\x00\xff"

    def test_text_body(self) -> None:
        """A JSON body is sent as it is."""
        request = make_request("POST", headers=[("Content-Type", "application/json")], body=b"[1]")
        event = event_of(apigw_v2, request)
        assert (event["body"], event["isBase64Encoded"]) == ("[1]", False)


class V1ReplyTests:
    def test_reply(self) -> None:
        """statusCode, headers and body make the reply."""
        reply = reply_of(
            apigw_v1, {"statusCode": 201, "headers": {"Content-Type": "text/plain"}, "body": "hi"}
        )
        assert reply == Reply(201, (("Content-Type", "text/plain"),), b"hi")

    def test_status_required(self) -> None:
        """A result without statusCode is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v1, {"body": "hi"})

    @pytest.mark.parametrize(
        "status", [99, 600, 1000, -1, "99", "600", "2000", " 200", "200.0", "", True, None, 200.5]
    )
    def test_status_range(self, status: object) -> None:
        """A status that is not an HTTP status, as an integer or three digits, is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v1, {"statusCode": status})

    def test_status_numeric_string(self) -> None:
        """A REST API takes a statusCode of three digits in a string (AWS's own blueprints)."""
        assert reply_of(apigw_v1, {"statusCode": "201", "body": "x"}).status == 201

    def test_default_content_type(self) -> None:
        """Without a Content-Type the reply is application/json, as from a REST API."""
        reply = reply_of(apigw_v1, {"statusCode": 200, "body": "<b>hi</b>"})
        assert reply.headers == (("Content-Type", "application/json"),)

    @pytest.mark.parametrize("status", [204, 304])
    def test_no_content_no_default_type(self, status: int) -> None:
        """A 204 or 304 gets no default Content-Type: it has no content."""
        assert reply_of(apigw_v1, {"statusCode": status}).headers == ()

    def test_multi_value_wins(self) -> None:
        """A name in both headers and multiValueHeaders takes only the multi values."""
        reply = reply_of(
            apigw_v1,
            {
                "statusCode": 200,
                "headers": {"X-A": "single", "X-B": "b"},
                "multiValueHeaders": {"x-a": ["m1", "m2"], "X-C": ["c"]},
            },
        )
        assert sorted(reply.headers) == [
            ("Content-Type", "application/json"),
            ("X-B", "b"),
            ("X-C", "c"),
            ("x-a", "m1"),
            ("x-a", "m2"),
        ]

    def test_identical_fields_not_duplicated(self) -> None:
        """Both fields holding the same header (lambda_http) give it once."""
        reply = reply_of(
            apigw_v1,
            {
                "statusCode": 200,
                "headers": {"content-type": "text/plain"},
                "multiValueHeaders": {"content-type": ["text/plain"]},
            },
        )
        assert reply.headers == (("content-type", "text/plain"),)

    @pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b"])
    @pytest.mark.parametrize("field", ["headers", "multiValueHeaders"])
    def test_control_characters(self, field: str, value: str) -> None:
        """CR, LF or another control character in a header value is malformed."""
        headers: object = {"X-A": value} if field == "headers" else {"X-A": [value]}
        with pytest.raises(MalformedReply):
            reply_of(apigw_v1, {"statusCode": 200, field: headers})

    def test_bad_header_name(self) -> None:
        """A header name that is not a token is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v1, {"statusCode": 200, "headers": {"X A": "1"}})

    def test_base64_body(self) -> None:
        """isBase64Encoded bodies are decoded."""
        body = base64.b64encode(b"\x89PNG\x00\xff").decode()
        reply = reply_of(apigw_v1, {"statusCode": 200, "body": body, "isBase64Encoded": True})
        assert reply.body == b"\x89PNG\x00\xff"

    def test_base64_body_invalid(self) -> None:
        """A body flagged base64 that is not base64 is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v1, {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True})

    def test_text_body_not_decoded(self) -> None:
        """Without isBase64Encoded a base64-looking body is sent as text."""
        reply = reply_of(apigw_v1, {"statusCode": 200, "body": "aGk=", "isBase64Encoded": False})
        assert reply.body == b"aGk="

    def test_null_body(self) -> None:
        """A missing or null body is empty."""
        assert reply_of(apigw_v1, {"statusCode": 204, "body": None}).body == b""
        assert reply_of(apigw_v1, {"statusCode": 204}).body == b""

    @pytest.mark.parametrize(
        "result",
        [
            {"statusCode": 200, "body": {"a": 1}},
            {"statusCode": 200, "isBase64Encoded": "yes"},
            {"statusCode": 200, "headers": ["X-A"]},
            {"statusCode": 200, "headers": {"X-A": ["1"]}},
            "just a string",
            [200],
        ],
    )
    def test_malformed_fields(self, result: object) -> None:
        """A result of the wrong shape is malformed, never passed through."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v1, result)

    def test_not_json(self) -> None:
        """A payload that is not JSON is malformed."""
        with pytest.raises(MalformedReply):
            apigw_v1.parse(b"{not json")

    def test_connection_headers_dropped(self) -> None:
        """Hop-by-hop headers and Content-Length from the function are dropped."""
        reply = reply_of(
            apigw_v1,
            {
                "statusCode": 200,
                "headers": {"Connection": "close", "Content-Length": "99", "X-Ok": "1"},
                "multiValueHeaders": {"Transfer-Encoding": ["chunked"]},
            },
        )
        assert reply.headers == (("X-Ok", "1"), ("Content-Type", "application/json"))


class V2ReplyTests:
    def test_structured(self) -> None:
        """A result with statusCode is a structured reply."""
        reply = reply_of(
            apigw_v2,
            {"statusCode": 202, "headers": {"content-type": "text/plain"}, "body": "ok"},
        )
        assert reply == Reply(202, (("content-type", "text/plain"),), b"ok")

    def test_inferred_object(self) -> None:
        """JSON without statusCode is a 200 application/json reply with that JSON as body."""
        payload = b'{"body": "x", "headers": {"a": "b"}}'
        reply = apigw_v2.parse(payload)
        assert reply == Reply(200, (("content-type", "application/json"),), payload)

    def test_inferred_string_keeps_quotes(self) -> None:
        """A string result is the body with its quotes."""
        reply = apigw_v2.parse(json.dumps("Hello, world!").encode())
        assert reply.body == b'"Hello, world!"'
        assert len(reply.body) == 15
        assert reply.status == 200

    @pytest.mark.parametrize("payload", [b"42", b"null", b"[1, 2]", b"true"])
    def test_inferred_other_json(self, payload: bytes) -> None:
        """Any other JSON value is a verbatim JSON body too."""
        assert apigw_v2.parse(payload) == Reply(
            200, (("content-type", "application/json"),), payload
        )

    def test_not_json(self) -> None:
        """A payload that is not JSON is malformed."""
        with pytest.raises(MalformedReply):
            apigw_v2.parse(b"Hello")

    def test_cookies(self) -> None:
        """Each cookies entry becomes its own Set-Cookie header."""
        reply = reply_of(
            apigw_v2,
            {"statusCode": 204, "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "headers": {}},
        )
        assert reply.headers == (("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; HttpOnly"))

    def test_default_content_type(self) -> None:
        """Without a Content-Type the reply is application/json, as from a Function URL."""
        reply = reply_of(apigw_v2, {"statusCode": 200, "body": "<b>hi</b>"})
        assert reply.headers == (("Content-Type", "application/json"),)

    @pytest.mark.parametrize("cookies", ["a=1", [1, None], ["a=1\r\nX-Evil: 1"], {"a": "1"}])
    def test_bad_cookies(self, cookies: object) -> None:
        """cookies that are not a list of clean strings are malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v2, {"statusCode": 200, "cookies": cookies})

    def test_header_lists_refused(self) -> None:
        """Payload 2.0 header values are strings; a list is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v2, {"statusCode": 200, "headers": {"x-a": ["1", "2"]}})

    def test_header_control_characters(self) -> None:
        """A header value with CR/LF is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v2, {"statusCode": 200, "headers": {"x-a": "1\r\nx-b: 2"}})

    def test_multi_value_headers_ignored(self) -> None:
        """multiValueHeaders (sent by lambda_http) means nothing in payload 2.0."""
        reply = reply_of(
            apigw_v2,
            {
                "statusCode": 200,
                "headers": {"x-a": "1", "content-type": "text/plain"},
                "multiValueHeaders": {"x-a": ["1"]},
            },
        )
        assert reply.headers == (("x-a", "1"), ("content-type", "text/plain"))

    @pytest.mark.parametrize("status", [99, 600, "201", None, False])
    def test_status_range(self, status: object) -> None:
        """A statusCode that is not an integer HTTP status is malformed."""
        with pytest.raises(MalformedReply):
            reply_of(apigw_v2, {"statusCode": status})

    def test_base64_body(self) -> None:
        """isBase64Encoded bodies are decoded."""
        body = base64.b64encode(b"\x00\x01\xfe").decode()
        reply = reply_of(apigw_v2, {"statusCode": 200, "body": body, "isBase64Encoded": True})
        assert reply.body == b"\x00\x01\xfe"
