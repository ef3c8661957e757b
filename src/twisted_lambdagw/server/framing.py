"""
What the gateway accepts in an HTTP/1.1 request head, beyond llhttp's own checks.

llhttp (through httptools, in its strict mode) reads the bytes: the request
line, header names and values, Content-Length and chunked bodies.  Some rules
of RFC 9112 it leaves to the server, and a gateway that forwards requests to
functions must not leave them open: L{check_head} applies them to a head
llhttp has read, and says which status refuses it.

 - The version is HTTP/1.0 or HTTP/1.1 (else 505).
 - Transfer-Encoding, if present, is exactly one field whose value is
   C{chunked}: any other coding, a list, or a repeat is refused with 400
   (RFC 9112 section 6.3; the gateway decodes no other coding, and a request
   whose final coding is not chunked has no length a server can trust).
 - Content-Length, if present, is one field of digits (llhttp also refuses
   repeats and a Content-Length beside Transfer-Encoding).
 - Host: exactly one in HTTP/1.1, at most one in HTTP/1.0, and a valid
   C{host[:port]} (RFC 9112 section 3.2).
 - The target is origin-form (C{/path?query}) or absolute-form
   (C{http://host/path}); in absolute-form the target's authority replaces
   the Host field (RFC 9112 section 3.2.3).  Asterisk-form is left to
   twisted.web (200 for C{OPTIONS *}, 405 for any other method);
   authority-form (C{CONNECT}) and any other target are refused with 400: the
   gateway is no proxy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
"""A Host value: reg-name, IPv4 address or IP literal, and an optional port (RFC 3986)."""

_ABSOLUTE = re.compile(rb"[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)(.*)", re.DOTALL)
"""An absolute-form target: its authority, then its path and query."""

VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}
"""The versions served, as llhttp names them and as twisted.web's Request takes them."""


class Refused(Exception):
    """
    A request head the gateway refuses: C{status} and a message for the client.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Head:
    """
    A request head, checked: what twisted.web's Request is given.
    """

    method: bytes
    path: bytes
    """The target as twisted.web's Request takes it: origin-form."""
    version: bytes
    fields: dict[bytes, list[bytes]]
    """Lower-case names to values, as read (the Host of an absolute target put in)."""
    length: int | None
    """The body's length: 0 for none, None for chunked."""


def check_head(
    method: bytes, target: bytes, version: str, fields: dict[bytes, list[bytes]]
) -> Head:
    """
    The head llhttp read, checked against the rules above.

    @param version: as httptools gives it, C{"1.1"}.
    @raise Refused: the head breaks one of them.
    """
    served = VERSIONS.get(version)
    if served is None:
        raise Refused(505, "HTTP version not supported")
    length: int | None = 0
    codings = fields.get(b"transfer-encoding")
    if codings is not None:
        if len(codings) != 1 or codings[0].lower() != b"chunked":
            raise Refused(400, "Transfer-Encoding must be exactly chunked")
        if b"content-length" in fields:
            raise Refused(400, "both Transfer-Encoding and Content-Length")
        length = None
    else:
        lengths = fields.get(b"content-length")
        if lengths is not None:
            if len(lengths) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
                raise Refused(400, "bad Content-Length")
            length = int(lengths[0])
    hosts = fields.get(b"host")
    if hosts is None:
        if served == b"HTTP/1.1":
            raise Refused(400, "missing Host header")
    elif len(hosts) != 1:
        raise Refused(400, "more than one Host header")
    elif not HOST.fullmatch(hosts[0]):
        raise Refused(400, "bad Host header")
    if target[:1] != b"/" and target != b"*":
        target = _from_absolute(target, fields)
    return Head(method, target, served, fields, length)


def _from_absolute(target: bytes, fields: dict[bytes, list[bytes]]) -> bytes:
    """
    The origin-form of an absolute-form C{target}, whose authority becomes the Host.
    """
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute is None:
        raise Refused(400, "request target must be a path or an absolute URI")
    authority, path = absolute.groups()
    if not HOST.fullmatch(authority):
        raise Refused(400, "bad authority in the request target")
    fields[b"host"] = [authority]
    return path if path[:1] == b"/" else b"/" + path
