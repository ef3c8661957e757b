"""
Tests for L{twisted_lambdagw.core.formats.httpjson}: the caddy-awslambda envelope
both ways, with the additions DESIGN.md "The HTTPJSON envelope" lists.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.formats import get_format, httpjson
from twisted_lambdagw.core.messages import Reply

from .request_factory import request_from_fields as make_request

JSON = ("Content-Type", "application/json")


def envelope(**fields: Any) -> bytes:
    """
    An HTTPJSON-REP reply with the given fields.
    """
    return json.dumps({"type": "HTTPJSON-REP", **fields}).encode("utf-8")


def event(body: bytes = b"", **fields: Any) -> dict[str, Any]:
    """
    The decoded HTTPJSON-REQ event for a request.
    """
    document = json.loads(httpjson.build(make_request(body=body, **fields)))
    assert isinstance(document, dict)
    return document


class BuildTests(SynchronousTestCase):
    """
    L{httpjson.build} makes the HTTPJSON-REQ event.
    """

    def test_shape(self) -> None:
        """
        The event is exactly the original's shape, with the function's path.
        """
        request = make_request(
            method="POST",
            raw_path="/lambda/hello/a%20b",
            path="/lambda/hello/a b",
            function_raw_path="/a%20b",
            function_path="/a b",
            raw_query="x=1&x=2&y=%20",
            host="example.com:8080",
            protocol="HTTP/1.1",
            headers=(
                ("Accept", "*/*"),
                ("Cookie", "a=1"),
                ("X-Multi", "one"),
                ("x-multi", "two, three"),
                ("X-Request-ID", "req-9"),
            ),
            body=b"hello",
        )
        self.assertEqual(
            json.loads(httpjson.build(request)),
            {
                "type": "HTTPJSON-REQ",
                "meta": {
                    "method": "POST",
                    "path": "/a b",
                    "query": "x=1&x=2&y=%20",
                    "host": "example.com:8080",
                    "proto": "HTTP/1.1",
                    "headers": {
                        "accept": ["*/*"],
                        "cookie": ["a=1"],
                        "x-multi": ["one", "two, three"],
                        "x-request-id": ["req-9"],
                    },
                },
                "body": "hello",
            },
        )

    def test_emptyBody(self) -> None:
        """
        No body is the empty string, with no bodyEncoding.
        """
        document = event(b"", headers=())
        self.assertEqual(document["body"], "")
        self.assertNotIn("bodyEncoding", document)
        self.assertEqual(document["meta"]["headers"], {})

    def test_utf8Body(self) -> None:
        """
        A UTF-8 body travels as text, without bodyEncoding.
        """
        text = 'caf\u00e9 \u2603 "quoted" \\ \n\x00'
        document = event(text.encode("utf-8"))
        self.assertEqual(document["body"], text)
        self.assertNotIn("bodyEncoding", document)

    def test_binaryBody(self) -> None:
        """
        A body that is not UTF-8 is base64, and decodes to the same bytes.
        """
        for body in (b"\xff\xfe\x00\x01", bytes(range(256)), b"caf\xe9", b"ok\xc3"):
            document = event(body)
            self.assertEqual(document["bodyEncoding"], "base64")
            self.assertEqual(base64.b64decode(document["body"], validate=True), body)

    def test_compactUTF8(self) -> None:
        """
        The event is compact UTF-8 JSON (payload size counts against 6 MB).
        """
        payload = httpjson.build(make_request(body="\u00e9".encode()))
        self.assertIn("\u00e9".encode(), payload)
        self.assertNotIn(b": ", payload)
        self.assertNotIn(b", ", payload)

    def test_registered(self) -> None:
        """
        The format is registered under its config name.
        """
        self.assertIs(get_format("httpjson"), httpjson)


class ParseEnvelopeTests(SynchronousTestCase):
    """
    L{httpjson.parse} of HTTPJSON-REP envelopes.
    """

    def test_full(self) -> None:
        """
        Status, headers (string or list values) and body are taken as given.
        """
        reply = httpjson.parse(
            envelope(
                meta={
                    "status": 201,
                    "headers": {
                        "Content-Type": "text/plain; charset=utf-8",
                        "Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly"],
                        "X-Count": 3,
                    },
                },
                body="created \u2603",
            )
        )
        self.assertEqual(
            reply,
            Reply(
                201,
                (
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Set-Cookie", "a=1; Path=/"),
                    ("Set-Cookie", "b=2; HttpOnly"),
                    ("X-Count", "3"),
                ),
                "created \u2603".encode(),
            ),
        )

    def test_base64Body(self) -> None:
        """
        bodyEncoding base64 is decoded to the exact bytes.
        """
        data = bytes(range(256))
        reply = httpjson.parse(
            envelope(body=base64.b64encode(data).decode("ascii"), bodyEncoding="base64")
        )
        self.assertEqual(reply.body, data)

    def test_emptyBodyEncoding(self) -> None:
        """
        An empty bodyEncoding means none, as in the original.
        """
        self.assertEqual(httpjson.parse(envelope(body="aGk=", bodyEncoding="")).body, b"aGk=")

    def test_leadingWhitespace(self) -> None:
        """
        Whitespace before the '{' does not make an envelope raw.
        """
        reply = httpjson.parse(b" \r\n\t" + envelope(meta={"status": 404}, body="gone"))
        self.assertEqual(reply, Reply(404, (JSON,), b"gone"))

    def test_defaults(self) -> None:
        """
        Without meta or body: 200, application/json and an empty body.
        """
        self.assertEqual(httpjson.parse(envelope()), Reply(200, (JSON,), b""))
        self.assertEqual(httpjson.parse(envelope(meta=None, body=None)), Reply(200, (JSON,), b""))
        self.assertEqual(
            httpjson.parse(envelope(meta={"headers": None, "status": None})),
            Reply(200, (JSON,), b""),
        )

    def test_contentTypeAnyCase(self) -> None:
        """
        A content type in any letter case replaces the default.
        """
        reply = httpjson.parse(envelope(meta={"headers": {"content-TYPE": ["text/html"]}}))
        self.assertEqual(reply.headers, (("content-TYPE", "text/html"),))

    def test_statuses(self) -> None:
        """
        Every final status from 200 to 599 is kept.
        """
        for status in (200, 204, 301, 404, 418, 500, 599):
            self.assertEqual(httpjson.parse(envelope(meta={"status": status})).status, status)

    def test_zeroStatus(self) -> None:
        """
        A status of 0 or below is 200, as in the original: Go's zero value,
        what a function using the plugin's own C{ReplyMeta} without setting
        C{Status} sends.
        """
        for status in (0, -1, -404):
            reply = httpjson.parse(envelope(meta={"status": status, "headers": {}}, body="x"))
            self.assertEqual(reply, Reply(200, (JSON,), b"x"))

    def test_goFieldNames(self) -> None:
        """
        Keys as a Go struct without JSON tags marshals them are honoured,
        matched case-insensitively as Go's encoding/json matches them.
        """
        payload = json.dumps(
            {
                "Type": "HTTPJSON-REP",
                "Meta": {"Status": 201, "Headers": {"X-A": ["1"]}},
                "Body": "aGk=",
                "BodyEncoding": "base64",
            }
        ).encode("utf-8")
        self.assertEqual(httpjson.parse(payload), Reply(201, (("X-A", "1"), JSON), b"hi"))
        shouting = json.dumps({"TYPE": "HTTPJSON-REP", "META": {"STATUS": 404}, "BODY": "no"})
        self.assertEqual(httpjson.parse(shouting.encode()), Reply(404, (JSON,), b"no"))

    def test_goFoldedLetters(self) -> None:
        """
        The long s (U+017F) folds to s and the Kelvin sign (U+212A) to k in
        Go's matching; other look-alikes match nothing.
        """
        folded = {"type": "HTTPJSON-REP", "meta": {"\u017ftatu\u017f": 202}, "body": ""}
        self.assertEqual(httpjson.parse(json.dumps(folded).encode()).status, 202)
        dotless = {"type": "HTTPJSON-REP", "meta": {"\u0130": 1}, "body": "", "bod\u0131": "x"}
        self.assertEqual(httpjson.parse(json.dumps(dotless).encode()), Reply(200, (JSON,), b""))

    def test_goLastSpellingWins(self) -> None:
        """
        Of several spellings of one key, the last in the object counts, as Go
        assigns each in turn.
        """
        raw = b'{"type": "HTTPJSON-REP", "body": "first", "Body": "last"}'
        self.assertEqual(httpjson.parse(raw).body, b"last")
        raw = b'{"type": "HTTPJSON-REP", "Body": "first", "body": "last"}'
        self.assertEqual(httpjson.parse(raw).body, b"last")
        not_ours = b'{"type": "other", "Type": "HTTPJSON-REP", "body": "x"}'
        self.assertEqual(httpjson.parse(not_ours).body, b"x")
        ours_then_not = b'{"Type": "HTTPJSON-REP", "type": "other", "body": "x"}'
        self.assertEqual(httpjson.parse(ours_then_not).body, ours_then_not)

    def test_unknownFieldsIgnored(self) -> None:
        """
        Fields the envelope does not define are ignored.
        """
        reply = httpjson.parse(envelope(meta={"status": 202, "extra": [1]}, body="x", more={}))
        self.assertEqual(reply, Reply(202, (JSON,), b"x"))

    def test_hopByHopDropped(self) -> None:
        """
        Hop-by-hop headers and the function's Content-Length are dropped (section 9.7).
        """
        # Any of them, in any letter case, would corrupt the response framing.
        reply = httpjson.parse(
            envelope(
                meta={
                    "headers": {
                        "Content-Length": "999",
                        "transfer-encoding": "chunked",
                        "Connection": ["close"],
                        "Keep-Alive": "timeout=5",
                        "Upgrade": "h2c",
                        "TE": "trailers",
                        "Trailer": "X-T",
                        "Proxy-Authenticate": "Basic",
                        "Proxy-Connection": "close",
                        "X-Kept": "yes",
                    }
                },
                body="short",
            )
        )
        self.assertEqual(reply, Reply(200, (("X-Kept", "yes"), JSON), b"short"))

    def test_surrogateEscapes(self) -> None:
        """
        A body with JSON escapes decodes to its UTF-8 text.
        """
        reply = httpjson.parse(b'{"type":"HTTPJSON-REP","body":"\\u00e9\\ud83d\\ude00"}')
        self.assertEqual(reply.body, "\u00e9\U0001f600".encode())


class ParseRawTests(SynchronousTestCase):
    """
    A result that is not an envelope is the body itself: 200, application/json.
    """

    def test_passthrough(self) -> None:
        """
        Non-envelope payloads pass through byte for byte.
        """
        for payload in (
            b'{"hello": "world"}',
            b'"a string"',
            b"null",
            b"42",
            b"[1, 2]",
            b"plain text, not JSON",
            b"{ not json",
            b"{}",
            b'{"type": "HTTPJSON-REQ", "body": "x"}',
            b'{"type": "httpjson-rep", "body": "x"}',
            b'{"type": ["HTTPJSON-REP"]}',
            b'  {"a": 1}',
            b"",
            b"\xff\xfe{}",
            b'{"type": "HTTPJSON-REP", "body": "\xff"}',
            b'[{"type": "HTTPJSON-REP"}]',
        ):
            self.assertEqual(httpjson.parse(payload), Reply(200, (JSON,), payload), payload)


class ParseMalformedTests(SynchronousTestCase):
    """
    An envelope with a malformed field is a 502, never passed through raw.
    """

    def assertMalformed(self, payload: bytes) -> None:
        error = self.assertRaises(MalformedReply, httpjson.parse, payload)
        self.assertEqual(error.status, 502)

    def test_badStatus(self) -> None:
        """
        A status that is not an int from 200 to 599 (or 0 and below) is malformed.
        """
        statuses: list[object] = ["200", "0", True, False, 99, 100, 101, 199, 600, 2e2, [200], {}]
        for status in statuses:
            self.assertMalformed(envelope(meta={"status": status}))

    def test_badHeaders(self) -> None:
        """
        Headers that could split the response or are not text are malformed.
        """
        for headers in (
            {"X-A": "a\r\nInjected: 1"},
            {"X-A": "a\nb"},
            {"X-A": "a\rb"},
            {"X-A": ["ok", "a\r\n"]},
            {"X-A": "nul\x00"},
            {"X-A": "del\x7f"},
            {"Bad Name": "v"},
            {"Bad:Name": "v"},
            {"": "v"},
            {"X-\u00e9": "v"},
            {"X-A": {"nested": "object"}},
            {"X-A": None},
            {"X-A": True},
            {"X-A": [["nested"]]},
            ["X-A", "v"],
            "X-A: v",
        ):
            self.assertMalformed(envelope(meta={"headers": headers}))

    def test_badBody(self) -> None:
        """
        A body that is not a string is malformed.
        """
        for body in (1, True, ["a"], {"a": 1}):
            self.assertMalformed(envelope(body=body))

    def test_loneSurrogateBody(self) -> None:
        """
        A body holding an escaped lone surrogate cannot be UTF-8: malformed,
        rather than invalid bytes sent to the client.
        """
        self.assertMalformed(b'{"type": "HTTPJSON-REP", "body": "bad \\ud800 text"}')

    def test_badBase64(self) -> None:
        """
        A base64 body that does not decode strictly is malformed.
        """
        for body in ("not base64!", "aGk", "aGk=x", "a\u00e9==", "aG k="):
            self.assertMalformed(envelope(body=body, bodyEncoding="base64"))

    def test_unknownBodyEncoding(self) -> None:
        """
        A bodyEncoding other than base64 is malformed.
        """
        for encoding in ("gzip", "BASE64", "base32", 1, True, ["base64"]):
            self.assertMalformed(envelope(body="", bodyEncoding=encoding))

    def test_badMeta(self) -> None:
        """
        meta that is not an object is malformed.
        """
        metas: list[object] = [[], "status", 200, True]
        for meta in metas:
            self.assertMalformed(envelope(meta=meta))


class RoundTripTests(SynchronousTestCase):
    """
    Bodies survive the trip through a function that echoes them back.
    """

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(body=st.binary(max_size=2048))
    def test_echoBase64(self, body: bytes) -> None:
        """
        Any body, echoed back base64-encoded, comes back byte for byte.
        """
        document = json.loads(httpjson.build(make_request(body=body)))
        if document.get("bodyEncoding") == "base64":
            received = base64.b64decode(document["body"], validate=True)
        else:
            self.assertNotIn("bodyEncoding", document)
            received = document["body"].encode("utf-8")
        self.assertEqual(received, body)
        reply = httpjson.parse(
            envelope(body=base64.b64encode(received).decode("ascii"), bodyEncoding="base64")
        )
        self.assertEqual(reply.body, body)

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(body=st.one_of(st.binary(max_size=512), st.text(max_size=512).map(str.encode)))
    def test_echoFields(self, body: bytes) -> None:
        """
        Any body comes back byte for byte when its body and bodyEncoding are echoed as sent.
        """
        document = json.loads(httpjson.build(make_request(body=body)))
        fields = {k: document[k] for k in ("body", "bodyEncoding") if k in document}
        payload = json.dumps({"type": "HTTPJSON-REP", **fields}, ensure_ascii=False)
        self.assertEqual(httpjson.parse(payload.encode("utf-8")).body, body)
