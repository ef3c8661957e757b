"""
An issuer's signing keys (its JWKS), fetched, cached and kept fresh.

A request never waits on the network for a key the cache holds: the keys are
fetched when the gateway starts, refreshed in the background every
L{REFRESH_INTERVAL}, and fetched again while a request waits only when a
token names a C{kid} the cache does not hold (an issuer that just rotated),
at most once every L{REFETCH_INTERVAL}.  A failed fetch keeps the keys held:
an issuer that is down changes nothing for tokens signed with known keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import treq
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from jwt import PyJWK
from jwt.exceptions import PyJWKError
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS

from ...core.authorizers import is_loopback

REFRESH_INTERVAL = 300.0
"""Seconds between background refreshes of the keys."""
RETRY_INTERVAL = 30.0
"""Seconds before the next background try after a failed one."""
REFETCH_INTERVAL = 60.0
"""At most one fetch for an unknown kid in this many seconds."""
FETCH_TIMEOUT = 10.0
MAX_DOCUMENT_BYTES = 512 * 1024
"""A discovery document or JWKS longer than this is refused: no IdP's is near it."""


class FetchError(Exception):
    """
    The keys could not be fetched; the text says why, for the log.
    """


@dataclass(frozen=True, slots=True)
class SigningKey:
    """
    One of an issuer's keys, with the algorithm its JWK declares (if it does).
    """

    jwk: PyJWK
    algorithm: str | None
    document: str = ""
    """The JWK as the issuer published it (canonical JSON): whether a refresh changed the key."""


class KeySet:
    """
    The usable keys of one JWKS document, by C{kid}.

    Only asymmetric signing keys are kept: C{oct} keys (shared secrets) and
    keys marked for encryption are dropped, so no token can ever be checked
    against a secret the issuer published.
    """

    def __init__(self, keys: Mapping[str | None, SigningKey]) -> None:
        self.keys = dict(keys)

    @classmethod
    def parse(cls, document: object, previous: KeySet | None = None) -> KeySet:
        """
        The keys of a JWKS C{document}; L{FetchError} when it holds none.

        A key C{previous} holds unchanged (same C{kid}, same JWK) is kept as
        the same object, so what was verified with it stays verified.
        """
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise FetchError("not a JWKS document (no keys list)")
        keys: dict[str | None, SigningKey] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK(entry)
            except PyJWKError:
                continue
            kid = entry.get("kid")
            kid = kid if isinstance(kid, str) else None
            alg = entry.get("alg")
            text = json.dumps(entry, sort_keys=True)
            known = previous.keys.get(kid) if previous is not None else None
            if known is not None and known.document == text:
                keys[kid] = known
                continue
            keys[kid] = SigningKey(key, alg if isinstance(alg, str) else None, text)
        if not keys:
            raise FetchError("the JWKS holds no usable signing key")
        return cls(keys)

    def same_as(self, other: KeySet | None) -> bool:
        """
        Whether C{other} holds the very same keys under the same kids.
        """
        if other is None or self.keys.keys() != other.keys.keys():
            return False
        return all(key is other.keys[kid] for kid, key in self.keys.items())

    def find(self, kid: str | None) -> SigningKey | None:
        """
        The key named C{kid}; without a kid, the only key if there is one.
        """
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)


def check_fetch_url(url: str) -> None:
    """
    Raise L{FetchError} unless C{url} is https, or http to a loopback address.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise FetchError(f"refusing to fetch keys from {url!r}: https only (http for loopback)")


def issuer_tls(ca_file: str | None) -> IPolicyForHTTPS:
    """
    How the keys' https fetches check certificates: as a browser does, trusting
    the CAs in C{ca_file} (PEM) alone when it is set, else the system's.
    """
    if ca_file is None:
        return BrowserLikePolicyForHTTPS()
    with open(ca_file, "rb") as f:
        pem = f.read()
    certificates = [
        Certificate.loadPEM(c.public_bytes(Encoding.PEM))
        for c in x509.load_pem_x509_certificates(pem)
    ]
    return BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(certificates))


class JWKSource:
    """
    The keys of one issuer, for every route whose authorizer trusts it.

    @param client: fetches the documents (treq, with certificate checks).
    @param clock: schedules the background refresh and the fetch timeouts.
    @param issuer: where discovery starts, when C{jwks_uri} is None.
    """

    log = Logger()

    def __init__(
        self,
        client: HTTPClient,
        clock: IReactorTime,
        issuer: str,
        jwks_uri: str | None = None,
        *,
        name: str = "",
        on_fetch: Callable[[str], None] | None = None,
        # on_fetch: told "ok" or "failed" after each fetch (metrics, tests).
    ) -> None:
        self._client = client
        self._clock = clock
        self.issuer = issuer
        self._configured_uri = jwks_uri
        self._jwks_uri = jwks_uri
        self.name = name
        self._on_fetch = on_fetch
        self.keys: KeySet | None = None
        self._waiters: list[Deferred[None]] = []
        self._last_unknown: float | None = None
        """When a token's unknown kid last made the keys be fetched."""
        self._refresh: IDelayedCall | None = None
        self._running = False
        self._rotated: list[Callable[[KeySet], None]] = []

    def on_rotate(self, callback: Callable[[KeySet], None]) -> None:
        """
        Call C{callback} with the new keys whenever a fetch brings keys that differ.
        """
        self._rotated.append(callback)

    def start(self) -> None:
        """
        Fetch the keys now, then keep them fresh until L{stop}.
        """
        self._running = True
        self._background()

    def stop(self) -> None:
        """
        Stop the background refresh; the keys held stay usable.
        """
        self._running = False
        if self._refresh is not None and self._refresh.active():
            self._refresh.cancel()
        self._refresh = None

    async def key(self, kid: str | None) -> SigningKey | None:
        """
        The key for C{kid}: from the cache, else after at most one fetch.

        None when the issuer does not have it (the token is bad).  Raises
        L{FetchError} when no keys were ever fetched and fetching fails now.
        """
        if self.keys is not None:
            key = self.keys.find(kid)
            if key is not None:
                return key
            now = self._clock.seconds()
            last = self._last_unknown
            if not self._waiters:
                if last is not None and now - last < REFETCH_INTERVAL:
                    return None
                self._last_unknown = now
        try:
            await self._fetch_shared()
        except FetchError:
            if self.keys is None:
                raise
            return None
        assert self.keys is not None
        return self.keys.find(kid)

    def _background(self) -> None:
        self._refresh = None
        if not self._running:
            return

        def done(ok: bool) -> None:
            if self._running:
                delay = REFRESH_INTERVAL if ok else RETRY_INTERVAL
                self._refresh = self._clock.callLater(delay, self._background)

        fetching = self._fetch_shared()
        fetching.addCallbacks(lambda _: done(True), lambda _: done(False))

    def _fetch_shared(self) -> Deferred[None]:
        """
        One fetch at a time; callers arriving meanwhile wait for the same one.
        """
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            Deferred.fromCoroutine(self._fetch()).addBoth(self._fetched)
        return waiter

    def _fetched(self, result: object) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                failure = result if result.check(FetchError) else Failure(FetchError(str(result)))
                waiter.errback(failure)
            else:
                waiter.callback(None)
        if self._on_fetch is not None:
            self._on_fetch("failed" if isinstance(result, Failure) else "ok")

    async def _fetch(self) -> None:
        try:
            if self._configured_uri is None:
                discovery = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = await self._get_json(discovery)
                if not isinstance(document, dict):
                    raise FetchError("the discovery document is not an object")
                if document.get("issuer") != self.issuer:
                    raise FetchError(
                        f"the discovery document's issuer {document.get('issuer')!r}"
                        f" is not {self.issuer!r}"
                    )
                uri = document.get("jwks_uri")
                if not isinstance(uri, str):
                    raise FetchError("the discovery document has no jwks_uri")
                self._jwks_uri = uri
            assert self._jwks_uri is not None
            keys = KeySet.parse(await self._get_json(self._jwks_uri), self.keys)
        except FetchError as e:
            self.log.warn(
                "authorizer {authorizer}: cannot fetch the keys of {issuer}: {why}",
                authorizer=self.name,
                issuer=self.issuer,
                why=str(e),
            )
            raise
        previous, self.keys = self.keys, keys
        if previous is not None and not keys.same_as(previous):
            for callback in self._rotated:
                callback(keys)

    async def _get_json(self, url: str) -> object:
        check_fetch_url(url)
        requested = self._client.get(
            url, headers=Headers({b"Accept": [b"application/json"]}), allow_redirects=False
        )
        timer = self._clock.callLater(FETCH_TIMEOUT, requested.cancel)
        try:
            response = await requested
            if response.code != 200:
                raise FetchError(f"{url}: HTTP {response.code}")
            chunks: list[bytes] = []
            size = [0]

            def collect(data: bytes) -> None:
                size[0] += len(data)
                if size[0] > MAX_DOCUMENT_BYTES:
                    raise FetchError(f"{url}: longer than {MAX_DOCUMENT_BYTES} bytes")
                chunks.append(data)

            await treq.collect(response, collect)
        except FetchError:
            raise
        except CancelledError:
            raise FetchError(f"{url}: no answer within {FETCH_TIMEOUT:g}s") from None
        except Exception as e:
            raise FetchError(f"{url}: {type(e).__name__}: {e}") from None
        finally:
            if timer.active():
                timer.cancel()
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            raise FetchError(f"{url}: not JSON") from None
