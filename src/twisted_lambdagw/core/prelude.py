"""
The status and headers at the start of a streamed function response.

A function written for Function URL streaming (Node's
``awslambda.HttpResponseStream.from``, Rust ``lambda_runtime``, Lambda Web
Adapter's ``response_stream`` mode) starts its stream with the
``application/vnd.awslambda.http-integration-response`` prelude: a UTF-8
JSON object with ``statusCode``, ``headers``, ``cookies`` and
``multiValueHeaders``, then eight NUL bytes, then the body
(research/lambda-protocol.md §2.6).  A function that does not use it
streams the body alone.  L{PreludeParser} reads the concatenated
``PayloadChunk`` payloads and yields a L{ResponseHead} once, then the body
bytes as they come.

Which streams carry a prelude (L{PreludeMode}):

- ``"always"``: the route says the function writes one.  Bytes are
  buffered up to the first run of eight NULs, which must end within
  C{max_prelude_size} (64 KB); overflow, a stream that ends inside the
  prelude, or metadata that is not a valid JSON object is a 502
  (L{MalformedReply}).  An empty stream is an empty 200: Node writes the
  prelude just before the first write, so a function that writes nothing
  sends nothing.
- ``"never"``: the stream is the body; 200 with the caller's content type.
- ``"auto"``, the meaning we give ``stream = yes``: a prelude is there when
  the first byte is ``{`` and the first top-level JSON object (found by
  tracking braces outside strings) is followed at once by eight NULs, all
  within the cap.  JSON never contains a raw NUL, and every known writer
  puts the delimiter right after compact JSON, so a real prelude always
  passes this test.  A body that starts with ``{`` (a JSON document, an
  NDJSON stream) is released as soon as its first object closes without
  the delimiter, instead of being held until 64 KB or the end of the stream
  as a plain search for eight NULs would have to.  A stream that fails the
  test is passed through unchanged, 200, the caller's content type.  A
  candidate that passes the test but is not a valid metadata object is a
  502: it was clearly meant as a prelude, and its metadata must not leak to
  the client as body.

Metadata rules, as API Gateway applies them: ``statusCode`` defaults to 200
and must be 200-599; ``headers`` values are a string or a list of strings;
when a name (case-insensitively) is in both ``headers`` and
``multiValueHeaders``, only the ``multiValueHeaders`` values count; every
``cookies`` entry is its own ``Set-Cookie``.  Names and values are checked
like every other reply, ``Content-Length`` and hop-by-hop headers are
dropped, and the caller's content type is added when none is given.

Pure: no reactor, no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final, Literal

from twisted_lambdagw.core.formats._common import (
    checked_header,
    checked_status,
    has_header,
    header_lines,
    reply_headers,
)

from .errors import MalformedReply
from .messages import Headers

PreludeMode = Literal["auto", "always", "never"]

DELIMITER: Final = b"\0" * 8
MAX_PRELUDE_SIZE: Final = 64 * 1024
"""Metadata plus delimiter must end within this many bytes of the stream."""

_OUTSIDE_STRING = re.compile(rb'[{}"]')
_INSIDE_STRING = re.compile(rb'["\\]')


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """
    The status and headers of a streamed response, validated.
    """

    status: int
    headers: Headers


class PreludeParser:
    """
    Split a streamed function response into its head and body bytes.

    Call L{feed} with each payload chunk and L{finish} when the stream ends.
    Each returns ``(head, body)``: C{head} is the L{ResponseHead} in exactly
    one call (None in every other), and C{body} is the body bytes that call
    releases.  Body bytes never come before the head.
    """

    def __init__(
        self,
        *,
        mode: PreludeMode = "auto",
        default_content_type: str = "application/octet-stream",
        max_prelude_size: int = MAX_PRELUDE_SIZE,
    ) -> None:
        self._mode = mode
        self._default_content_type = default_content_type
        self._max = max_prelude_size
        self._buffer = bytearray()
        self.head: ResponseHead | None = None
        """The head, once it is known."""
        # "always": how far the delimiter search has looked.
        self._searched = 0
        # "auto": the brace scanner's state.
        self._scanned = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._object_end: int | None = None

    def feed(self, data: bytes) -> tuple[ResponseHead | None, bytes]:
        """
        The next bytes of the stream; returns what they release.
        """
        if self.head is not None:
            return None, data
        if self._mode == "never":
            return self._plain(data)
        if self._mode == "auto" and not self._buffer and data[:1] not in (b"", b"{"):
            return self._plain(data)
        self._buffer += data
        if self._mode == "always":
            return self._find_delimiter()
        return self._scan()

    def finish(self) -> tuple[ResponseHead | None, bytes]:
        """
        The stream ended; returns what is still held back.

        Raises L{MalformedReply} in ``"always"`` mode when the stream
        stopped inside the prelude.
        """
        if self.head is not None:
            return None, b""
        if self._mode == "always" and self._buffer:
            raise MalformedReply(detail="stream ended before the prelude delimiter")
        return self._plain(b"")

    def _plain(self, data: bytes) -> tuple[ResponseHead, bytes]:
        """
        No prelude: the default head, then everything buffered so far.
        """
        self.head = ResponseHead(200, (("Content-Type", self._default_content_type),))
        body = bytes(self._buffer) + data if self._buffer else data
        self._buffer = bytearray()
        return self.head, body

    def _split(self, metadata_end: int) -> tuple[ResponseHead, bytes]:
        """
        A prelude ends at C{metadata_end}: parse it, release the rest.
        """
        buffer = self._buffer
        self.head = self._parse(bytes(buffer[:metadata_end]))
        body = bytes(buffer[metadata_end + len(DELIMITER) :])
        self._buffer = bytearray()
        return self.head, body

    def _find_delimiter(self) -> tuple[ResponseHead | None, bytes]:
        buffer = self._buffer
        limit = min(len(buffer), self._max)
        found = buffer.find(DELIMITER, max(0, self._searched - len(DELIMITER) + 1), limit)
        if found >= 0:
            return self._split(found)
        if len(buffer) >= self._max:
            raise MalformedReply(detail=f"no prelude delimiter within the first {self._max} bytes")
        self._searched = limit
        return None, b""

    def _scan(self) -> tuple[ResponseHead | None, bytes]:
        """
        Advance the brace scanner; decide once the first object has closed.
        """
        buffer = self._buffer
        limit = min(len(buffer), self._max)
        position = self._scanned
        while self._object_end is None and position < limit:
            if self._escaped:
                self._escaped = False
                position += 1
                continue
            pattern = _INSIDE_STRING if self._in_string else _OUTSIDE_STRING
            match = pattern.search(buffer, position, limit)
            if match is None:
                position = limit
                break
            char = buffer[match.start()]
            position = match.end()
            if char == 0x5C:  # backslash: skip the escaped byte
                self._escaped = True
            elif char == 0x22:  # quote
                self._in_string = not self._in_string
            elif char == 0x7B:  # {
                self._depth += 1
            else:  # }
                self._depth -= 1
                if self._depth == 0:
                    self._object_end = position
        self._scanned = position

        end = self._object_end
        if end is None:
            if limit >= self._max:
                return self._plain(b"")
            return None, b""
        if end + len(DELIMITER) > self._max:
            return self._plain(b"")
        candidate = buffer[end : end + len(DELIMITER)]
        if candidate.count(0) != len(candidate):
            return self._plain(b"")
        if len(candidate) < len(DELIMITER):
            return None, b""
        return self._split(end)

    def _parse(self, raw: bytes) -> ResponseHead:
        """
        The head the metadata describes, or L{MalformedReply}.
        """
        try:
            document = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise MalformedReply(detail="prelude metadata is not UTF-8 JSON") from None
        if not isinstance(document, dict):
            raise MalformedReply(detail="prelude metadata is not a JSON object")

        status = document.get("statusCode")
        status = 200 if status is None else checked_status(status)

        multi = header_lines(document.get("multiValueHeaders"))
        overridden = {name.lower() for name, _ in multi}
        single = [
            line
            for line in header_lines(document.get("headers"))
            if line[0].lower() not in overridden
        ]

        cookies = document.get("cookies")
        if cookies is None:
            cookies = []
        if not isinstance(cookies, list):
            raise MalformedReply(detail="prelude cookies is not a list")
        cookie_lines = []
        for cookie in cookies:
            if not isinstance(cookie, str):
                raise MalformedReply(detail=f"prelude cookie is not a string: {cookie!r}")
            cookie_lines.append(checked_header("Set-Cookie", cookie))

        headers = reply_headers([*single, *multi, *cookie_lines])
        if not has_header(headers, "content-type"):
            headers = (*headers, ("Content-Type", self._default_content_type))
        return ResponseHead(status, headers)
