"""
twisted.web C{Headers} from fields the gateway has already checked.

Every way into C{Headers} (its constructor, C{setRawHeaders},
C{addRawHeader}) canonicalises each name and splits each value on line
breaks, a few Python calls per header.  The gateway builds C{Headers} on its
hot path from fields it has already read strictly: names that are tokens,
values without CR, LF or NUL (an Invoke answer's head, the signed headers of
an Invoke call).  For those L{checked_headers} fills the mapping C{Headers}
keeps (read and filled in L{twisted_lambdagw._compat}) in one step, with the names in the
capitalisation twisted.web gives them, asked of twisted.web once per name.
The result is equal to C{Headers(fields)}: the tests hold it to that.

L{head_lines} and L{read_fields} read a head that strictly, for the
gateway's two HTTP/1.1 parsers (request heads in L{twisted_lambdagw.server.site},
Invoke answers in L{twisted_lambdagw.invokers.aws.agent}).

If the installed Twisted keeps its headers some other way, L{FAST} is false
and the public constructor is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from twisted.web.http_headers import Headers

from twisted_lambdagw._compat import raw_mapping, raw_mapping_usable, set_raw_mapping
from twisted_lambdagw.core.patterns import HEADER_NAME

TOKEN = re.compile(HEADER_NAME.pattern.encode("ascii"))
"""An HTTP field name (RFC 9110 section 5.1)."""

_CANONICAL_CACHE_SIZE = 1000
_CACHED_NAME_LENGTH = 64
_canonical: dict[bytes, bytes] = {}


class BadHead(ValueError):
    """
    An HTTP head this module will not read; the message says what is wrong.
    """


def head_lines(head: bytes) -> list[bytes]:
    """
    The lines of an HTTP head (without its closing empty line), split on CRLF.

    @raise BadHead: a CR or LF not part of a CRLF, or a NUL.
    """
    lines = head.split(b"\r\n")
    breaks = len(lines) - 1
    if head.count(b"\r") != breaks or head.count(b"\n") != breaks or b"\x00" in head:
        raise BadHead("bare CR, LF or NUL in the head")
    return lines


def read_fields(lines: Iterable[bytes]) -> dict[bytes, list[bytes]]:
    """
    Header lines as fields: lower-case names, values without surrounding spaces and tabs.

    The result suits L{checked_headers} when the lines came from L{head_lines}.

    @raise BadHead: a line that is not a token, a colon and a value.
    """
    fields: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            raise BadHead(f"bad header line {line[:100]!r}")
        key = name.lower()
        values = fields.get(key)
        if values is None:
            fields[key] = [value.strip(b" \t")]
        else:
            values.append(value.strip(b" \t"))
    return fields


FAST = raw_mapping_usable()
"""Whether this Twisted's C{Headers} can be filled directly."""


def canonical_name(name: bytes) -> bytes:
    """
    C{name} capitalised as twisted.web capitalises it (C{content-md5} → C{Content-MD5}).

    @raise twisted.web.http_headers.InvalidHeaderName: C{name} is not a token.
    """
    known = _canonical.get(name)
    if known is not None:
        return known
    (known, _), *_ = Headers({name: []}).getAllRawHeaders()
    if len(_canonical) < _CANONICAL_CACHE_SIZE and len(name) <= _CACHED_NAME_LENGTH:
        # Bounded in count and size: the names clients and upstreams send
        # are not ours to choose.
        _canonical[name] = known
    return known


class CheckedHeaders(Headers):
    """
    C{Headers} made by L{checked_headers}: its copies skip the checks too.

    treq copies the headers of every call it sends (to add
    C{Accept-Encoding}); twisted.web's C{copy} builds the copy through the
    constructor, which checks each field again.  Fields that were checked
    once are copied as they are, each list of values copied so that the
    copy and the original change apart.
    """

    __slots__ = ()

    def copy(self) -> CheckedHeaders:
        copied = CheckedHeaders()
        set_raw_mapping(copied, {name: list(values) for name, values in raw_mapping(self).items()})
        return copied


def checked_headers(fields: Mapping[bytes, list[bytes]], *, fast: bool = FAST) -> Headers:
    """
    C{Headers(fields)}, for names that are tokens and values without CR, LF or NUL.

    The lists in C{fields} are kept, not copied: the caller gives them up.
    Names may come in any case; two spellings of one name must not both be given.
    """
    if not fast:
        return Headers(fields)
    headers = CheckedHeaders()
    known = _canonical.get
    set_raw_mapping(
        headers, {known(name) or canonical_name(name): values for name, values in fields.items()}
    )
    return headers


_STORED_AS_KNOWN = (Headers, CheckedHeaders)
"""The classes whose mapping L{raw_values} reads directly (when L{FAST})."""


def raw_values(headers: Headers, name: bytes) -> Sequence[bytes] | None:
    """
    C{headers.getRawHeaders(name)} for a lower-case C{name}: its values, or None.

    twisted.web's own lookup capitalises the name again on every call, and its
    C{Request.getHeader} decodes the values as UTF-8, raising for any other
    bytes a client sends.  This reads the mapping with the capitalised name
    kept by L{canonical_name}, and gives the bytes as they came.  The list is
    the headers' own: read it, never change it.
    """
    if FAST and type(headers) in _STORED_AS_KNOWN:
        values = raw_mapping(headers).get(_canonical.get(name) or canonical_name(name))
        return values or None
    return headers.getRawHeaders(name)
