"""
The HTTP client that carries Invoke calls to Lambda: treq, made cheap.

Every invocation is one POST of bytes already in memory to one of very few
hosts (Lambda's endpoint in each region).  L{lambda_client} is treq's own
C{HTTPClient}, over L{KeepAliveAgent} (L{twisted_lambdagw.invokers.aws.agent}), an
C{IAgent} made for such calls in place of twisted.web's general C{Agent};
what would cost on every request is set up once:

  - One endpoint per (scheme, host, port), made once and kept
    (L{EndpointCache}).  twisted.web's default makes a new endpoint for
    every request, and for https a new TLS context too, even when the
    request then goes out on a pooled connection.  An IP literal (a local
    Lambda API, the benchmark) gets a plain TCP endpoint: no name lookup on
    a thread for each new connection.  https keeps the same certificate
    checks as twisted.web's default (L{BrowserLikePolicyForHTTPS}: the
    system's roots, service-identity's host name check).
  - URLs in URI form (L{PreparedURL}): treq turns every URL into URI form
    with hyperlink, IDNA over the host included, on each request.  An
    Invoke URL is built from percent-encoded names, so it already is; a
    PreparedURL says so, and treq's conversion costs nothing.  The
    invoker keeps one per URL it calls.
  - A large persistent pool (L{persistent_pool}), which logs nothing per
    connection (twisted.web's logs "Starting factory" and "Stopping
    factory" for each one) and makes no timed call per request.
  - The body leaves with the request's head, in one write
    (L{BytesProducer}), not read from a file object in a cooperator task on
    a later turn of the reactor (treq's default for bytes).
  - No cookies (L{NO_COOKIES}): nothing is sent or kept.  The invoker
    passes C{allow_redirects=False} (a signed call must not go elsewhere)
    and C{unbuffered=True} (it reads each body once).

treq's client wraps every agent in twisted.web's C{ContentDecoderAgent},
which adds C{Accept-Encoding: gzip} and would inflate a gzip answer before
any size bound applies.  L{KeepAliveAgent} never sends that header and
fails any answer with a C{Content-Encoding}, so the wrapper has nothing to
decode: the bound of L{read_body} counts the bytes as they arrive.
"""

from __future__ import annotations

import ipaddress
import re
from http.cookiejar import Cookie
from typing import Any, cast
from urllib.request import Request

from hyperlink import EncodedURL
from treq.client import HTTPClient
from treq.content import collect
from treq.cookies import IndexableCookieJar
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from twisted_lambdagw._types import HTTPClient as InvokeClient
from twisted_lambdagw._types import IGatewayReactor

from .agent import BytesProducer, KeepAliveAgent
from .connection import whole_body


def persistent_pool(
    reactor: IGatewayReactor,
    max_per_host: int,
    idle_timeout: float = 60,
    connect_timeout: float = 30,
    tls: IPolicyForHTTPS | None = None,
) -> KeepAliveAgent:
    """
    The connections Invoke calls go out on: kept alive, up to C{max_per_host}
    idle ones per host, each closed after C{idle_timeout} seconds unused
    (before Lambda's side closes it: a connection the far end closed first
    fails the next request).  New connections give up after
    C{connect_timeout} seconds; C{tls} checks https servers' certificates
    (by default as twisted.web's Agent does).
    """
    endpoints = EndpointCache(reactor, connect_timeout, tls)
    return KeepAliveAgent(reactor, endpoints, max_per_host, idle_timeout)


@implementer(IAgentEndpointFactory)
class EndpointCache:
    """
    One client endpoint per (scheme, host, port), made on first use and kept.

    @param connect_timeout: seconds to wait for a new connection.
    @param tls: what checks https servers' certificates; by default the same
        as twisted.web's Agent.
    """

    def __init__(
        self,
        reactor: IGatewayReactor,
        connect_timeout: float = 30,
        tls: IPolicyForHTTPS | None = None,
    ) -> None:
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._tls = tls if tls is not None else BrowserLikePolicyForHTTPS()
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = self._endpoint(uri.scheme, uri.host, uri.port)
        return endpoint

    def _endpoint(self, scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
        if scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {scheme!r}")
        name = host.decode("ascii")
        endpoint: IStreamClientEndpoint
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self._connect_timeout)
        else:
            tcp = TCP4ClientEndpoint if address.version == 4 else TCP6ClientEndpoint
            endpoint = tcp(self._reactor, name, port, timeout=self._connect_timeout)
        if scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorForNetloc(host, port), endpoint)
        return endpoint


_URI_FORM = re.compile(
    # RFC 3986, for http(s): an authority with no user info and no escapes,
    # then a path and query of unreserved and reserved characters, each "%"
    # starting an escape.  No fragment (it is never sent).
    r"https?://[A-Za-z0-9\-._~!$&'()*+,;=:\[\]]+"
    r"(?:[/?](?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"
)


class PreparedURL(EncodedURL):
    """
    An http(s) URL whose text is already in URI form: ASCII, percent-encoded.

    treq sends C{url.to_uri().to_text()}; for a URL like this that is the
    text itself, so C{to_uri} returns the URL and C{to_text} the text it was
    made from, without hyperlink's re-encoding and IDNA pass on each request.
    Make one with L{PreparedURL.of}, which checks the text: a URL that is
    not in URI form would be sent differently from what was signed.
    """

    _text: str | None = None
    """The text it was made from (None in a copy made by C{replace})."""

    @classmethod
    def of(cls, text: str) -> PreparedURL:
        """
        The URL for C{text}; ValueError unless it is an http(s) URL in URI form.
        """
        if not _URI_FORM.fullmatch(text):
            raise ValueError(f"not an http(s) URL in URI form: {text!r}")
        url = cls.from_text(text)
        assert isinstance(url, cls)  # hyperlink builds cls(...)
        url._text = text
        return url

    def to_uri(self) -> EncodedURL:
        if self._text is None:
            return super().to_uri()
        return self

    def to_text(self, with_password: bool = False) -> str:
        if self._text is None:
            return super().to_text(with_password)
        # Checked by of(): it has no user info, so no password to leave out.
        return self._text


class NoCookies(IndexableCookieJar):
    """
    A cookie jar that stays empty: no cookie is sent, none is kept.

    treq's client keeps every cookie an answer sets and sends it back on the
    next request to that host; an Invoke call is signed and must carry only
    what was signed, and Lambda has no use for cookies.  Give it to treq's
    C{HTTPClient} and with each call (C{cookies=NO_COOKIES}, or treq builds
    a new jar per request).
    """

    def add_cookie_header(self, request: Request) -> None:
        """
        Send nothing.
        """

    def extract_cookies(self, response: Any, request: Request) -> None:
        """
        Keep nothing from the answer.
        """

    def set_cookie(self, cookie: Cookie) -> None:
        """
        Keep nothing given.
        """


NO_COOKIES = NoCookies()
"""The one jar every Invoke call uses: nothing is ever in it."""


def lambda_client(pool: KeepAliveAgent) -> HTTPClient:
    """
    treq's client for Invoke calls, over C{pool} (L{persistent_pool}): no
    cookies, bytes bodies written with the request's head.

    Call it with a L{PreparedURL}, C{cookies=NO_COOKIES},
    C{allow_redirects=False} and C{unbuffered=True} for the cheapest and
    safest request treq makes.
    """
    return HTTPClient(pool, cookiejar=NO_COOKIES, data_to_body_producer=BytesProducer)


def invoke_client(pool: KeepAliveAgent) -> InvokeClient:
    """
    L{lambda_client} typed as what the AWS invoker calls.

    (A cast: treq's C{post} is typed to fire with its own response class,
    a proxy for C{IResponse}, and Deferred's result type is invariant.)
    """
    return cast(InvokeClient, lambda_client(pool))


MAX_REPLY_BYTES = 8 * 1024 * 1024
"""
The most of a reply body the gateway reads from the Lambda API.  Lambda's own
synchronous replies stop at 6,291,556 bytes, and its refusals are small; the
margin is for emulators behind C{endpoint_url}.  Anything longer is a broken
or hostile endpoint, and reading it whole would let it take the gateway's
memory.
"""


class ReplyTooLarge(Exception):
    """
    A reply body went past the bound; the connection was closed.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"the Lambda API's reply is over {limit:,} bytes")
        self.limit = limit


async def read_body(response: IResponse, limit: int = MAX_REPLY_BYTES) -> bytes:
    """
    C{response}'s whole body, as treq's C{content} reads it, but never more
    than C{limit} bytes: past that, the connection is closed (it cannot go
    back to the pool with a body half read) and L{ReplyTooLarge} is raised.

    C{response} is as treq's client returned it.  When the agent under treq
    is L{KeepAliveAgent}, nothing decodes the body (treq's wrapper holds
    the agent's own answer) and all of it is in, it is taken as it is.
    """
    whole = whole_body(getattr(response, "original", None))
    if whole is not None:
        if len(whole) > limit:
            raise ReplyTooLarge(limit)
        return whole
    pieces: list[bytes] = []
    size = 0

    def keep(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise ReplyTooLarge(limit)
        pieces.append(data)

    await collect(response, keep)
    return b"".join(pieces)
