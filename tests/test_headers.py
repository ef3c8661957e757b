"""
Tests for L{twisted_lambdagw.net.headers}: the same Headers as twisted.web's constructor makes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers, InvalidHeaderName

from twisted_lambdagw.net import headers as headers_module
from twisted_lambdagw.net.headers import (
    FAST,
    TOKEN,
    BadHead,
    CheckedHeaders,
    canonical_name,
    checked_headers,
    head_lines,
    raw_values,
    read_fields,
)

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=20).map(str.encode)
values = st.text(st.characters(codec="utf-8", blacklist_characters="\r\n\x00"), max_size=40).map(
    str.encode
)
fields = st.dictionaries(names.map(bytes.lower), st.lists(values, max_size=3), max_size=10)


class CheckedHeadersTests(SynchronousTestCase):
    def test_fast_on_this_twisted(self) -> None:
        """
        The installed Twisted keeps its headers as checked_headers fills them.

        If this fails after a Twisted upgrade, the gateway still works (through
        the public constructor) but has lost the fast path: look at how
        Headers keeps its fields now.
        """
        self.assertTrue(FAST)

    @given(fields)
    def test_same_as_constructor(self, given_fields: dict[bytes, list[bytes]]) -> None:
        """
        Equal to Headers(fields), read by any spelling of each name.
        """
        expected = Headers({k: list(v) for k, v in given_fields.items()})
        for fast in (True, False):
            made = checked_headers({k: list(v) for k, v in given_fields.items()}, fast=fast)
            self.assertEqual(made, expected)
            self.assertEqual(list(made.getAllRawHeaders()), list(expected.getAllRawHeaders()))
            for name in given_fields:
                for spelling in (name, name.upper(), name.decode("ascii")):
                    self.assertEqual(made.getRawHeaders(spelling), expected.getRawHeaders(spelling))

    @given(fields)
    def test_copy(self, given_fields: dict[bytes, list[bytes]]) -> None:
        """
        A copy is equal to the original, changes apart from it, and copies cheaply in turn.
        """
        made = checked_headers({k: list(v) for k, v in given_fields.items()})
        copied = made.copy()
        self.assertIsInstance(copied, CheckedHeaders)
        self.assertEqual(copied, Headers({k: list(v) for k, v in given_fields.items()}))
        copied.addRawHeader(b"X-Added", b"1")
        for name in given_fields:
            copied.addRawHeader(name, b"more")
        self.assertEqual(made, Headers({k: list(v) for k, v in given_fields.items()}))

    def test_special_capitalisation(self) -> None:
        """
        Names twisted.web capitalises its own way come out its way.
        """
        self.assertEqual(canonical_name(b"content-md5"), b"Content-MD5")
        self.assertEqual(canonical_name(b"etag"), b"ETag")
        self.assertEqual(canonical_name(b"x-amz-function-error"), b"X-Amz-Function-Error")
        headers = checked_headers({b"www-authenticate": [b"Basic"]})
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"WWW-Authenticate", [b"Basic"])])

    def test_not_a_token(self) -> None:
        """
        A name that is not a token is refused, as twisted.web refuses it.
        """
        self.assertIsNone(TOKEN.fullmatch(b"bad name"))
        self.assertRaises(InvalidHeaderName, canonical_name, b"bad name")
        self.assertRaises(InvalidHeaderName, checked_headers, {b"x(y)": [b"1"]})

    def test_long_names_not_kept(self) -> None:
        """
        A name too long for the cache is still capitalised, and not kept.
        """
        name = b"x-" + b"a" * 200
        self.assertEqual(canonical_name(name), b"X-" + b"A" + b"a" * 199)
        self.assertNotIn(name, headers_module._canonical)
        short = b"x-kept-name"
        canonical_name(short)
        self.assertIn(short, headers_module._canonical)


class OtherHeaders(Headers):
    """
    A Headers class of someone else's: read through its own methods.
    """

    def getRawHeaders(self, name: Any, default: Any = None) -> Any:
        self.asked = True
        return super().getRawHeaders(name, default)


class RawValuesTests(SynchronousTestCase):
    @given(fields, st.lists(names.map(bytes.lower), max_size=5))
    def test_same_as_get_raw_headers(
        self, given_fields: dict[bytes, list[bytes]], others: list[bytes]
    ) -> None:
        """
        For names present and absent, in Headers made any way, the values
        C{getRawHeaders} gives, as the same list.
        """
        made = [
            Headers({k: list(v) for k, v in given_fields.items()}),
            checked_headers({k: list(v) for k, v in given_fields.items()}),
            OtherHeaders({k: list(v) for k, v in given_fields.items()}),
        ]
        for headers in made:
            for name in [*given_fields, *others, b"content-md5", b"dnt"]:
                self.assertEqual(raw_values(headers, name), headers.getRawHeaders(name))

    def test_any_bytes(self) -> None:
        """
        Values are the bytes as they came, whatever their encoding.
        """
        headers = checked_headers({b"x-request-id": [b"caf\xe9"], b"x-empty": []})
        self.assertEqual(raw_values(headers, b"x-request-id"), [b"caf\xe9"])
        self.assertIsNone(raw_values(headers, b"x-empty"))
        self.assertIsNone(raw_values(headers, b"x-absent"))

    def test_other_classes_asked(self) -> None:
        """
        A Headers subclass other than the gateway's is asked through its methods.
        """
        headers = OtherHeaders({b"host": [b"gw"]})
        self.assertEqual(raw_values(headers, b"host"), [b"gw"])
        self.assertTrue(headers.asked)


class ReadHeadTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """
        Names lower-cased, repeated names kept in order, values stripped of spaces and tabs.
        """
        lines = head_lines(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:\t2 \r\nEmpty:")
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertEqual(read_fields(lines[1:]), {b"x-a": [b"1", b"2"], b"empty": [b""]})

    def test_refused(self) -> None:
        """
        Bare CR, LF or NUL, and lines that are not a token, a colon and a value.
        """
        for head in (b"A: 1\nB: 2", b"A: 1\rB: 2", b"A: \x00"):
            self.assertRaises(BadHead, head_lines, head)
        for line in (b" folded: x", b"No colon", b": empty name", b"Bad Name: x"):
            error = self.assertRaises(BadHead, read_fields, [b"X: 1", line])
            self.assertIn("bad header line", str(error))
