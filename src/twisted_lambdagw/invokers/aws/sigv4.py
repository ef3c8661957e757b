"""
SigV4 for the one request the gateway signs: POST to Lambda's Invoke paths.

botocore's L{SigV4Auth} (used through L{twisted_lambdagw.invokers.aws.invoker.sign}) handles
every AWS request shape, through email-based header objects, URL parsing
and a fresh chain of four HMACs per request.  It cost a sixth of the
gateway's CPU per invocation.  The gateway signs only one shape: a POST of
bytes, to a URL made by L{twisted_lambdagw.invokers.aws.invoker.invoke_url}, with a couple of
C{X-Amz-*} headers and perhaps a session token.  For that shape this
module signs with:

  - the URL's canonical path, query and host worked out once per URL, by
    botocore's own helpers, and cached;
  - the signing key derived once per secret key, date and region, and
    cached;
  - the canonical request built directly as text, all of it but the date
    and the body's hash once per URL, session token and set of headers,
    and cached.

L{sign} answers None for anything outside that shape, and the caller signs
with botocore instead.  The property tests (tests/test_sigv4.py) check it
byte for byte against botocore over names, qualifiers, ARNs, bodies,
session tokens, hosts and ports, headers and times.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.utils import normalize_url_path

from twisted_lambdagw.core.patterns import HEADER_NAME

if TYPE_CHECKING:
    from twisted_lambdagw._compat import HashObject

__all__ = ["sign"]

SERVICE = "lambda"
ALGORITHM = "AWS4-HMAC-SHA256"

_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_OWN_HEADERS = frozenset(
    {"authorization", "date", "host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"}
)
"""Headers the signer sets or reads itself: a caller's would take another path in botocore."""
_NOT_SIGNED = frozenset(SIGNED_HEADERS_BLACKLIST)

# Signing times outside these years take botocore's path: datetime and
# time.strftime format some far years differently.
_EARLIEST = 946684800  # 2000-01-01
_LATEST = 4102444800  # 2100-01-01


@functools.lru_cache(maxsize=4096)
def _url_parts(url: str) -> tuple[str, str, str]:
    """
    The canonical path, canonical query and host header of a URL, as botocore makes them.
    """
    request = AWSRequest(method="POST", url=url)
    auth = SigV4Auth(ReadOnlyCredentials("", "", None), SERVICE, "")
    path = quote(normalize_url_path(urlsplit(url).path), safe="/~")
    host = auth.headers_to_sign(request)["host"]
    return path, auth.canonical_query_string(request), str(host)


@functools.lru_cache(maxsize=64)
def _signing_key(secret_key: str, date: str, region: str) -> bytes:
    """
    The SigV4 key for one secret key, day and region (AWS's four-HMAC derivation).
    """
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, SERVICE, "aws4_request"):
        key = hmac.digest(key, part.encode("utf-8"), "sha256")
    return key


_BLOCK = 64
"""SHA-256's block size, in bytes: HMAC pads its key to it."""
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes) -> tuple[HashObject, HashObject]:
    """
    SHA-256 after the key's inner and outer pads: HMAC-SHA256 (RFC 2104)
    with one key, ready to be copied for each message.

    A new HMAC in OpenSSL costs more than hashing a whole canonical request;
    the signing key is the same all day, so its padded states are kept.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_INNER_PAD)), hashlib.sha256(key.translate(_OUTER_PAD))


def _hmac_hex(key: bytes, message: bytes) -> str:
    """
    HMAC-SHA256 of C{message} with C{key}, in hex: C{hmac.digest} without a new HMAC each time.
    """
    inner_keyed, outer_keyed = _keyed(key)
    inner = inner_keyed.copy()
    inner.update(message)
    outer = outer_keyed.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


@functools.lru_cache(maxsize=4)
def _stamp_of_second(second: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


def _stamp(when: float) -> str:
    """
    The X-Amz-Date for a POSIX time, rounded to the second as
    C{datetime.fromtimestamp} rounds it (to the microsecond, half to even).
    """
    fraction, whole = math.modf(when)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second += 1
    elif micro < 0:
        second -= 1
    return _stamp_of_second(second)


@functools.lru_cache(maxsize=4096)
def _template(
    url: str, token: str | None, headers: tuple[tuple[str, str], ...]
) -> tuple[str, str, str] | None:
    """
    The canonical request around its two changing parts, or None when the
    request is outside the shape this signs.

    Of the canonical request, only the X-Amz-Date value and the body's hash
    change from one request to the next, for one URL, session token and set
    of caller headers: answered as the text before the date, the text
    between the date and the body's hash, and the signed header names.
    Cached: a gateway sends the same few of each.
    """
    if token and not _PRINTABLE.fullmatch(token):
        return None
    names = set()
    for name, value in headers:
        lower = name.lower()
        if (
            lower in _OWN_HEADERS
            or lower in _NOT_SIGNED
            or lower in names
            or not HEADER_NAME.fullmatch(name)
            or not _PRINTABLE.fullmatch(value)
        ):
            return None
        names.add(lower)
    path, query, host = _url_parts(url)
    canonical = [(name.lower(), " ".join(value.split())) for name, value in headers]
    canonical.append(("host", host))
    canonical.append(("x-amz-date", ""))
    if token:
        canonical.append(("x-amz-security-token", " ".join(token.split())))
    canonical.sort()  # by name: the names are distinct
    at = canonical.index(("x-amz-date", ""))
    signed_headers = ";".join(name for name, _ in canonical)

    def lines(part: list[tuple[str, str]]) -> str:
        return "".join(f"{name}:{value}\n" for name, value in part)

    before = f"POST\n{path}\n{query}\n{lines(canonical[:at])}x-amz-date:"
    after = f"\n{lines(canonical[at + 1 :])}\n{signed_headers}\n"
    return before, after, signed_headers


def sign(
    credentials: ReadOnlyCredentials,
    region: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    when: float,
) -> dict[str, str] | None:
    """
    The headers of a signed C{POST url}, exactly as L{twisted_lambdagw.invokers.aws.invoker.sign}
    makes them; or None when the request is not of the shape this signs.

    C{headers} are the caller's headers, to be signed: printable ASCII, no
    two names differing only in case, none of the headers SigV4 itself sets
    (Authorization, X-Amz-Date, Host...).
    """
    if not _EARLIEST <= when < _LATEST:
        return None
    token = credentials.token
    template = _template(url, token, tuple(headers.items()))
    if template is None:
        return None
    before, after, signed_headers = template
    stamp = _stamp(when)
    date = stamp[:8]
    canonical_request = before + stamp + after + hashlib.sha256(body).hexdigest()
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    string_to_sign = (
        f"{ALGORITHM}\n{stamp}\n{scope}\n"
        + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    )
    key = _signing_key(credentials.secret_key, date, region)
    signature = _hmac_hex(key, string_to_sign.encode("utf-8"))
    signed = dict(headers)
    signed["X-Amz-Date"] = stamp
    if token:
        signed["X-Amz-Security-Token"] = token
    signed["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope},"
        f" SignedHeaders={signed_headers}, Signature={signature}"
    )
    return signed
