"""
Property tests: what a request puts into an event comes back out of a reply.

Each test plays a function that echoes part of its event into its result,
so build and parse are checked together for every format.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.formats import FORMATS, EventFormat
from twisted_lambdagw.core.formats._common import NOT_FROM_FUNCTION
from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply

from .request_factory import make_request

STANDARD = ("apigw-v1", "apigw-v2", "alb", "alb-multi")
RESERVED = {"cookie", "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"}
RESERVED |= {"x-request-id", "content-type"} | NOT_FROM_FUNCTION

derandomized = settings(derandomize=True, database=None, deadline=None, max_examples=50)

TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-"

header_names = st.text(TOKEN, min_size=1, max_size=16).filter(
    lambda name: name.lower() not in RESERVED
)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    | st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
    max_size=20,
)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=8)
query_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
query_lists = st.lists(st.tuples(query_text.filter(bool), query_text), max_size=8)
cookie_names = st.text(TOKEN.replace("%", ""), min_size=1, max_size=10)
cookie_values = st.text(TOKEN + "()/:<=>?@[]{}", max_size=12)
cookie_lists = st.lists(st.tuples(cookie_names, cookie_values), min_size=1, max_size=6)
content_types = st.sampled_from(
    [None, "text/plain", "application/json", "application/octet-stream", "image/png"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
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


def by_name(lines: Any) -> dict[str, list[str]]:
    """
    Header values grouped by lower-cased name.
    """
    groups: dict[str, list[str]] = {}
    for name, value in lines:
        groups.setdefault(name.lower(), []).append(value)
    return groups


def echo_headers(name: str, event: dict[str, Any]) -> dict[str, Any]:
    """
    A result that sends the event's headers back, in the format's reply field.
    """
    if name == "apigw-v2":
        return {"statusCode": 200, "headers": event["headers"]}
    if "multiValueHeaders" in event:
        return {"statusCode": 200, "multiValueHeaders": event["multiValueHeaders"]}
    return {"statusCode": 200, "headers": event["headers"]}


class HeaderPropertyTests:
    @pytest.mark.parametrize("name", STANDARD)
    @derandomized
    @given(lines=header_lists)
    def test_round_trip(self, name: str, lines: list[tuple[str, str]]) -> None:
        """Request headers echoed back as reply headers arrive as the format carries them."""
        fmt = FORMATS[name]
        request = make_request(headers=lines)
        sent = by_name(request.headers)
        expected: dict[str, list[str]]
        if name == "apigw-v2":
            expected = {key: [",".join(values)] for key, values in sent.items()}
        elif name == "alb":
            expected = {key: values[-1:] for key, values in sent.items()}
        else:
            expected = sent
        if "content-type" not in expected:
            default = "application/octet-stream" if name.startswith("alb") else "application/json"
            expected["content-type"] = [default]
        reply = reply_of(fmt, echo_headers(name, event_of(fmt, request)))
        assert by_name(reply.headers) == expected


class QueryPropertyTests:
    @derandomized
    @given(pairs=query_lists, plus=st.booleans())
    def test_decoded(self, pairs: list[tuple[str, str]], plus: bool) -> None:
        """API Gateway formats give back every decoded key and value, in order."""
        raw = urlencode(pairs) if plus else urlencode(pairs, quote_via=quote)
        request = make_request(query=raw)
        expected: dict[str, list[str]] = {}
        for key, value in pairs:
            expected.setdefault(key, []).append(value)
        v1 = event_of(FORMATS["apigw-v1"], request)
        assert (v1["multiValueQueryStringParameters"] or {}) == expected
        assert (v1["queryStringParameters"] or {}) == {k: v[-1] for k, v in expected.items()}
        v2 = event_of(FORMATS["apigw-v2"], request)
        assert v2["rawQueryString"] == raw
        assert v2.get("queryStringParameters", {}) == {k: ",".join(v) for k, v in expected.items()}

    @derandomized
    @given(pairs=query_lists, plus=st.booleans())
    def test_undecoded(self, pairs: list[tuple[str, str]], plus: bool) -> None:
        """ALB formats give back every key and value still encoded, in order."""
        raw = urlencode(pairs) if plus else urlencode(pairs, quote_via=quote)
        decode: Callable[[str], str] = unquote_plus if plus else unquote
        expected: dict[str, list[str]] = {}
        for key, value in pairs:
            expected.setdefault(key, []).append(value)
        request = make_request(query=raw)
        multi = event_of(FORMATS["alb-multi"], request)["multiValueQueryStringParameters"]
        decoded: dict[str, list[str]] = {}
        for key, values in multi.items():
            decoded.setdefault(decode(key), []).extend(decode(value) for value in values)
        assert decoded == expected
        single = event_of(FORMATS["alb"], request)["queryStringParameters"]
        assert {decode(k): decode(v) for k, v in single.items()} == {
            k: v[-1] for k, v in expected.items()
        }


class CookiePropertyTests:
    @derandomized
    @given(cookies=cookie_lists, split=st.booleans())
    def test_request_cookies(self, cookies: list[tuple[str, str]], split: bool) -> None:
        """Payload 2.0 splits Cookie headers into one entry per cookie, in order."""
        pairs = [f"{name}={value}" for name, value in cookies]
        joined = [("Cookie", "; ".join(pairs))]
        headers = [("Cookie", pair) for pair in pairs] if split else joined
        event = event_of(FORMATS["apigw-v2"], make_request(headers=headers))
        assert event["cookies"] == pairs
        assert "cookie" not in event["headers"]

    @derandomized
    @given(cookies=cookie_lists)
    def test_reply_cookies(self, cookies: list[tuple[str, str]]) -> None:
        """Request cookies echoed as reply cookies become one Set-Cookie each, in order."""
        header = "; ".join(f"{name}={value}" for name, value in cookies)
        fmt = FORMATS["apigw-v2"]
        event = event_of(fmt, make_request(headers=[("Cookie", header)]))
        reply = reply_of(fmt, {"statusCode": 204, "cookies": event["cookies"]})
        assert reply.headers == tuple(("Set-Cookie", cookie) for cookie in event["cookies"])

    @pytest.mark.parametrize("name", ["apigw-v1", "alb", "alb-multi"])
    @derandomized
    @given(cookies=cookie_lists)
    def test_cookie_header_kept(self, name: str, cookies: list[tuple[str, str]]) -> None:
        """Payload 1.0 and ALB formats pass the Cookie header as it came."""
        header = "; ".join(f"{n}={v}" for n, v in cookies)
        event = event_of(FORMATS[name], make_request(headers=[("Cookie", header)]))
        if "multiValueHeaders" in event:
            values = by_name(
                (key, value) for key, vs in event["multiValueHeaders"].items() for value in vs
            )
        else:
            values = by_name(event["headers"].items())
        assert values["cookie"] == [header]


class BodyPropertyTests:
    @pytest.mark.parametrize("name", STANDARD)
    @derandomized
    @given(body=st.binary(max_size=64) | st.text(max_size=32).map(str.encode), ctype=content_types)
    def test_round_trip(self, name: str, body: bytes, ctype: str | None) -> None:
        """A request body echoed back with its isBase64Encoded arrives byte for byte."""
        fmt = FORMATS[name]
        headers = [] if ctype is None else [("Content-Type", ctype)]
        event = event_of(fmt, make_request("POST", headers=headers, body=body))
        if event["isBase64Encoded"]:
            assert base64.b64decode(event["body"]) == body
        else:
            assert (event.get("body") or "").encode("utf-8") == body
        result = {"statusCode": 200, "body": event.get("body")}
        result["isBase64Encoded"] = event["isBase64Encoded"]
        assert reply_of(fmt, result).body == body


class ReplyRobustnessTests:
    @pytest.mark.parametrize("name", STANDARD)
    @derandomized
    @given(value=json_values)
    def test_any_json(self, name: str, value: object) -> None:
        """Any JSON result is a reply or MalformedReply, never another error."""
        with contextlib.suppress(MalformedReply):
            reply_of(FORMATS[name], value)

    @pytest.mark.parametrize("name", STANDARD)
    @derandomized
    @given(status=st.integers(), value=header_values, bad=st.sampled_from(["\r", "\n", "\x00"]))
    def test_status_and_header_checks(self, name: str, status: int, value: str, bad: str) -> None:
        """Statuses outside 200-599 and header values with CR/LF/NUL are malformed."""
        fmt = FORMATS[name]
        good = {"statusCode": status, "headers": {"x-a": value}}
        if 200 <= status <= 599:
            assert reply_of(fmt, good).status == status
        else:
            with pytest.raises(MalformedReply):
                reply_of(fmt, good)
        with pytest.raises(MalformedReply):
            reply_of(fmt, {"statusCode": 200, "headers": {"x-a": value + bad + value}})


reply_documents = st.fixed_dictionaries(
    {},
    optional={
        "statusCode": st.integers(200, 599) | st.integers(100, 700) | st.text(max_size=3),
        "headers": st.dictionaries(header_names, header_values | st.integers(), max_size=3),
        "multiValueHeaders": st.dictionaries(header_names, st.lists(header_values), max_size=3),
        "cookies": st.lists(cookie_values, max_size=2),
        "body": st.text(max_size=10) | st.none() | st.integers(),
        "isBase64Encoded": st.booleans() | st.none(),
        "type": st.sampled_from(["HTTPJSON-REP", "HTTPJSON-REP", "other"]),
        "meta": st.fixed_dictionaries(
            {},
            optional={
                "status": st.integers(200, 599) | st.integers(100, 700),
                "headers": st.dictionaries(header_names, st.lists(header_values), max_size=2)
                | json_values,
            },
        ),
        "bodyEncoding": st.sampled_from(["", "base64", "gzip"]),
    },
)


def parsed_either_way(fmt: EventFormat, payload: bytes, document: object) -> tuple[object, ...]:
    """
    What C{fmt} makes of C{payload}, from its bytes and from its document.
    """
    answers: list[object] = []
    for parsed in (NOT_PARSED, document):
        try:
            answers.append(fmt.parse(payload, parsed))
        except MalformedReply as error:
            answers.append(("MalformedReply", error.detail))
    return tuple(answers)


class ParsedDocumentTests:
    @pytest.mark.parametrize("name", sorted(FORMATS))
    @settings(derandomize=True, database=None, deadline=None, max_examples=200)
    @given(value=reply_documents | json_values, spaces=st.sampled_from(["", " ", "\n\t "]))
    def test_same_reply_from_the_document(self, name: str, value: object, spaces: str) -> None:
        """
        A result parsed once already (by the AWS invoker) gives the same reply,
        or the same refusal, as its bytes parsed by the format.
        """
        payload = (spaces + json.dumps(value) + spaces).encode("utf-8")
        from_bytes, from_document = parsed_either_way(FORMATS[name], payload, json.loads(payload))
        assert from_document == from_bytes
