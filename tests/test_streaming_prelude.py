"""
Tests for L{twisted_lambdagw.core.prelude}: the http-integration-response prelude.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.core.errors import MalformedReply
from twisted_lambdagw.core.prelude import (
    MAX_PRELUDE_SIZE,
    PreludeMode,
    PreludeParser,
    ResponseHead,
)

NUL8 = b"\0" * 8
OCTETS = ("Content-Type", "application/octet-stream")


def prelude(document: object) -> bytes:
    """
    Metadata the way Node's HttpResponseStream writes it: compact JSON, 8 NULs.
    """
    return json.dumps(document, separators=(",", ":")).encode() + NUL8


def run(
    pieces: Sequence[bytes], mode: PreludeMode = "auto", **kwargs: object
) -> tuple[ResponseHead, bytes]:
    """
    Feed every piece and finish; check the head comes once and before any body.
    """
    parser = PreludeParser(mode=mode, **kwargs)  # type: ignore[arg-type]
    heads: list[ResponseHead] = []
    body = b""
    for result in [*(parser.feed(p) for p in pieces), parser.finish()]:
        head, chunk = result
        if head is not None:
            heads.append(head)
        if chunk:
            assert heads, "body bytes before the head"
        body += chunk
    assert len(heads) == 1, heads
    assert parser.head is heads[0]
    return heads[0], body


def head_of(metadata: object, mode: PreludeMode = "always") -> ResponseHead:
    return run([prelude(metadata) + b"body"], mode)[0]


class MetadataTests(SynchronousTestCase):
    """
    How prelude metadata becomes a status and headers.
    """

    def test_statusAndHeaders(self) -> None:
        """
        statusCode and headers, given as strings or lists, make the head.
        """
        head, body = run(
            [
                prelude(
                    {
                        "statusCode": 201,
                        "headers": {"content-type": "text/plain", "x-a": ["1", "2"]},
                    }
                )
                + b"hi"
            ]
        )
        self.assertEqual(
            head,
            ResponseHead(201, (("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2"))),
        )
        self.assertEqual(body, b"hi")

    def test_defaults(self) -> None:
        """
        Without statusCode or a content type: 200 and the caller's content type.
        """
        self.assertEqual(head_of({}), ResponseHead(200, (OCTETS,)))
        head, _ = run([prelude({}) + b"x"], default_content_type="text/html")
        self.assertEqual(head.headers, (("Content-Type", "text/html"),))

    def test_cookies(self) -> None:
        """
        Every cookie becomes its own Set-Cookie header.
        """
        head = head_of({"cookies": ["a=1; Path=/", "b=2, c=3"]})
        self.assertEqual(
            head.headers, (("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2, c=3"), OCTETS)
        )

    def test_multiValueHeadersWin(self) -> None:
        """
        A name in both header fields takes only the multiValueHeaders values.
        """
        head = head_of(
            {
                "headers": {"X-Dup": "single", "X-Only": "kept"},
                "multiValueHeaders": {"x-dup": ["m1", "m2"], "X-Multi": ["a"]},
            }
        )
        self.assertEqual(
            head.headers,
            (("X-Only", "kept"), ("x-dup", "m1"), ("x-dup", "m2"), ("X-Multi", "a"), OCTETS),
        )

    def test_droppedHeaders(self) -> None:
        """
        Content-Length and hop-by-hop headers from the function are dropped.
        """
        head = head_of(
            {
                "headers": {
                    "Content-Length": "10",
                    "Transfer-Encoding": "chunked",
                    "Connection": "close",
                    "Content-Type": "text/csv",
                }
            }
        )
        self.assertEqual(head.headers, (("Content-Type", "text/csv"),))

    def test_badStatus(self) -> None:
        """
        A statusCode that is not an integer from 200 to 599 is a 502.
        """
        for status in ["200", 199, 600, True, 200.5, [200]]:
            with self.assertRaises(MalformedReply):
                head_of({"statusCode": status})

    def test_badHeaders(self) -> None:
        """
        Header names and values that could split the response are refused.
        """
        for metadata in [
            {"headers": {"bad name": "v"}},
            {"headers": {"x": "a\r\nInjected: yes"}},
            {"headers": {"x": ["ok", "b\n"]}},
            {"headers": {"x": {"nested": 1}}},
            {"headers": ["x", "y"]},
            {"multiValueHeaders": {"x": [None]}},
            {"cookies": "a=1"},
            {"cookies": [1]},
            {"cookies": ["a=1\r\nX: y"]},
        ]:
            with self.assertRaises(MalformedReply):
                head_of(metadata)

    def test_notAnObject(self) -> None:
        """
        Metadata that is not a UTF-8 JSON object is a 502.
        """
        for raw in [b"[1,2]", b"{", b'"text"', b'{"a":"\xff"}', b""]:
            with self.assertRaises(MalformedReply):
                run([raw + NUL8 + b"body"], "always")

    def test_malformedIs502(self) -> None:
        """
        A malformed prelude is a 502 whose message says nothing of the metadata.
        """
        with self.assertRaises(MalformedReply) as caught:
            head_of({"statusCode": "secret"})
        self.assertEqual(caught.exception.status, 502)
        self.assertNotIn("secret", caught.exception.message)


class AlwaysModeTests(SynchronousTestCase):
    """
    Streams that the route says start with a prelude.
    """

    def test_everySplit(self) -> None:
        """
        Splitting the stream at any one offset, or into single bytes, changes nothing.
        """
        data = prelude({"statusCode": 202, "headers": {"x": "y"}}) + b"the body"
        expected = (ResponseHead(202, (("x", "y"), OCTETS)), b"the body")
        for mode in ("always", "auto"):
            for cut in range(len(data) + 1):
                self.assertEqual(run([data[:cut], data[cut:]], mode), expected)
            self.assertEqual(run([data[i : i + 1] for i in range(len(data))], mode), expected)

    def test_headBeforeBody(self) -> None:
        """
        The head is released as soon as the delimiter is complete, before any body.
        """
        parser = PreludeParser(mode="always")
        self.assertEqual(parser.feed(prelude({})[:-1]), (None, b""))
        self.assertEqual(parser.feed(b"\0"), (ResponseHead(200, (OCTETS,)), b""))
        self.assertEqual(parser.feed(b"next"), (None, b"next"))

    def test_passThrough(self) -> None:
        """
        After the head, each piece is passed on as it is, NULs and all.
        """
        parser = PreludeParser(mode="always")
        parser.feed(prelude({}))
        piece = NUL8 + b"{" + NUL8
        self.assertIs(parser.feed(piece)[1], piece)
        self.assertEqual(parser.finish(), (None, b""))

    def test_firstDelimiterEnds(self) -> None:
        """
        The first run of eight NULs ends the metadata; later ones are body.
        """
        _, body = run([prelude({}) + NUL8 + b"x" + NUL8], "always")
        self.assertEqual(body, NUL8 + b"x" + NUL8)

    def test_atTheCap(self) -> None:
        """
        Metadata and delimiter of exactly 64 KB are accepted; one byte more is a 502.
        """
        filler = MAX_PRELUDE_SIZE - len(prelude({"p": ""}))
        fits = prelude({"p": "x" * filler})
        self.assertEqual(len(fits), MAX_PRELUDE_SIZE)
        self.assertEqual(run([fits + b"b"], "always")[1], b"b")
        too_big = prelude({"p": "x" * (filler + 1)})
        with self.assertRaises(MalformedReply) as caught:
            run([too_big + b"b"], "always")
        self.assertIn("65536", caught.exception.detail)

    def test_overflowWithoutWaiting(self) -> None:
        """
        Once 64 KB have arrived without a delimiter, the parser fails at once.
        """
        parser = PreludeParser(mode="always")
        self.assertEqual(parser.feed(b"{" + b" " * (MAX_PRELUDE_SIZE - 2)), (None, b""))
        self.assertRaises(MalformedReply, parser.feed, b" ")

    def test_smallerCap(self) -> None:
        """
        The cap is the caller's to choose.
        """
        with self.assertRaises(MalformedReply):
            run([prelude({"a": "b"})], "always", max_prelude_size=10)

    def test_endsInsidePrelude(self) -> None:
        """
        A stream that ends before the delimiter is a 502.
        """
        for data in [b"{", prelude({})[:-1]]:
            self.assertRaises(MalformedReply, run, [data], "always")

    def test_emptyStream(self) -> None:
        """
        A function that wrote nothing gets an empty 200.
        """
        self.assertEqual(run([], "always"), (ResponseHead(200, (OCTETS,)), b""))
        self.assertEqual(run([b"", b""], "always"), (ResponseHead(200, (OCTETS,)), b""))


class AutoModeTests(SynchronousTestCase):
    """
    Streams that may or may not start with a prelude.
    """

    def test_notABrace(self) -> None:
        """
        A stream that does not start with ``{`` is body from its first byte.
        """
        parser = PreludeParser(mode="auto", default_content_type="text/event-stream")
        head = ResponseHead(200, (("Content-Type", "text/event-stream"),))
        self.assertEqual(parser.feed(b""), (None, b""))
        self.assertEqual(parser.feed(b"data: 1\n\n"), (head, b"data: 1\n\n"))
        self.assertEqual(parser.feed(b"{" + NUL8), (None, b"{" + NUL8))

    def test_jsonBodyReleasedEarly(self) -> None:
        """
        A JSON body is released once its first object closes without a delimiter.
        """
        parser = PreludeParser(mode="auto")
        self.assertEqual(parser.feed(b'{"token": "a"}'), (None, b""))
        self.assertEqual(
            parser.feed(b'\n{"token"'), (ResponseHead(200, (OCTETS,)), b'{"token": "a"}\n{"token"')
        )

    def test_bracesInStrings(self) -> None:
        """
        Braces and escaped quotes inside strings do not end the object.
        """
        metadata = {"headers": {"x-text": 'a "}" \\ {"'}}
        data = prelude(metadata) + b"body"
        head, body = run([data[i : i + 1] for i in range(len(data))])
        self.assertEqual(head.headers[0], ("x-text", 'a "}" \\ {"'))
        self.assertEqual(body, b"body")

    def test_partialDelimiter(self) -> None:
        """
        An object followed by fewer than eight NULs is body.
        """
        self.assertEqual(run([b"{}\0\0\0x"])[1], b"{}\0\0\0x")
        self.assertEqual(run([b"{}\0\0\0"])[1], b"{}\0\0\0")

    def test_endsUndecided(self) -> None:
        """
        A stream that ends before the first object closes is body.
        """
        self.assertEqual(run([b'{"a": [1, 2'])[1], b'{"a": [1, 2')

    def test_largeJSONBody(self) -> None:
        """
        An object still open after 64 KB is a body, released at the cap.
        """
        parser = PreludeParser(mode="auto")
        start = b'{"items": [' + b"1," * (MAX_PRELUDE_SIZE // 2)
        head, body = parser.feed(start)
        self.assertEqual(head, ResponseHead(200, (OCTETS,)))
        self.assertEqual(body, start)

    def test_delimiterOverCap(self) -> None:
        """
        A delimiter that would end past the cap means there is no prelude.
        """
        data = prelude({"p": "x"})
        self.assertEqual(run([data], max_prelude_size=len(data) - 1)[1], data)

    def test_nulInsideObject(self) -> None:
        """
        NULs before the first object closes are not a delimiter.
        """
        data = b'{"a":' + NUL8 + b"}x"
        self.assertEqual(run([data])[1], data)

    def test_invalidCandidate(self) -> None:
        """
        Something shaped like a prelude that is not valid metadata is a 502, not body.
        """
        for data in [b"{abc}" + NUL8, prelude({"statusCode": "x"})]:
            self.assertRaises(MalformedReply, run, [data + b"body"])

    def test_emptyStream(self) -> None:
        """
        An empty stream is an empty 200.
        """
        self.assertEqual(run([]), (ResponseHead(200, (OCTETS,)), b""))


class NeverModeTests(SynchronousTestCase):
    """
    Streams the route says are all body.
    """

    def test_preludeIsBody(self) -> None:
        """
        Even a valid prelude is passed through as body bytes.
        """
        data = prelude({"statusCode": 404}) + b"x"
        self.assertEqual(run([data], "never"), (ResponseHead(200, (OCTETS,)), data))

    def test_headWithFirstPiece(self) -> None:
        """
        The head comes with the first piece, which is passed on unchanged.
        """
        parser = PreludeParser(mode="never")
        head, body = parser.feed(b"x")
        self.assertEqual((head, body), (ResponseHead(200, (OCTETS,)), b"x"))


header_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "statusCode": st.integers(200, 599),
        "headers": st.dictionaries(
            header_names, st.one_of(header_values, st.lists(header_values, max_size=3))
        ),
        "cookies": st.lists(header_values, max_size=3),
        "multiValueHeaders": st.dictionaries(header_names, st.lists(header_values, max_size=3)),
    },
)


class PropertyTests(SynchronousTestCase):
    """
    Properties over generated preludes and bodies.
    """

    @settings(derandomize=True, max_examples=100, deadline=None)
    @given(
        metadata,
        st.binary(max_size=200),
        st.lists(st.integers(0, 400), max_size=10),
        st.sampled_from(["always", "auto"]),
    )
    def test_anySplit(
        self, document: dict[str, object], body: bytes, cuts: list[int], mode: PreludeMode
    ) -> None:
        """
        However the stream is cut, the head and body are those of the whole stream.
        """
        data = prelude(document) + body
        points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
        pieces = [data[a:b] for a, b in itertools.pairwise(points)]
        head, streamed = run(pieces, mode)
        self.assertEqual((head, streamed), run([data], mode))
        self.assertEqual(streamed, body)
        self.assertEqual(head.status, document.get("statusCode", 200))
        cookies = document.get("cookies", [])
        assert isinstance(cookies, list)
        self.assertEqual([v for n, v in head.headers if n == "Set-Cookie"], cookies)
