"""
The JWT authorizer: a bearer token checked against an issuer's published keys.

PyJWT's algorithms check the signature; this module decides everything around it, so
that nothing about the check is left to a token's own say: the algorithm
must be one the config allows (never C{none}, never HS*), the key is the
issuer's, found by C{kid}, and of the algorithm's type (an HS256 token
"signed" with a public key finds no HMAC key to check against), and the
times are checked against the injected clock.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ...core.authorizers import JWTAuthorizerConfig, describe
from ...core.errors import AuthorizerFailed, Forbidden, Unauthorized
from ...core.messages import Reply
from ..chain import Passage, Principal, Stage
from ._common import ALLOWED, DENIED, FAILED, INVALID, MISSING, Ambiguous, identity_value, record
from .jwks import FetchError, JWKSource, SigningKey
from .tokens import TokenCache, Verified

CHALLENGE = "Bearer"


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


class InvalidToken(Exception):
    """
    The token is not acceptable; the text is the client's error_description.
    """


class JWTAuthorizer:
    """
    One route's JWT check: a step of its chain at the C{authorize} stage.

    @param keys: the issuer's keys, shared by every route of the authorizer.
    @param scopes: the route's C{scopes}; the token must hold one of them.
    """

    stage: ClassVar[Stage] = "authorize"
    log = Logger()

    def __init__(
        self,
        config: JWTAuthorizerConfig,
        keys: JWKSource,
        clock: IReactorTime,
        scopes: tuple[str, ...] = (),
        tokens: TokenCache | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.clock = clock
        self.tokens = tokens
        self.scopes = frozenset(scopes)
        self._scopes_text = " ".join(scopes)
        self._audience = frozenset(config.audience)
        self._algorithms = frozenset(config.algorithms)

    def describe(self) -> str:
        return describe(self.config, tuple(sorted(self.scopes)))

    async def __call__(self, passage: Passage) -> Reply | None:
        try:
            token = identity_value(passage.request, self.config.identity_source)
        except Ambiguous as e:
            record(passage, INVALID)
            raise self._invalid(str(e)) from None
        if token is None:
            record(passage, MISSING)
            raise Unauthorized(challenge=CHALLENGE, detail="no token")
        scheme, _, rest = token.partition(" ")
        if rest and scheme.lower() == "bearer":
            token = rest.strip()
        try:
            claims = await self._claims(token, passage)
        except InvalidToken as e:
            record(passage, INVALID)
            raise self._invalid(str(e)) from None
        except FetchError as e:
            record(passage, FAILED)
            raise AuthorizerFailed(
                detail=f"authorizer {self.config.name}: no keys for {self.config.issuer}: {e}"
            ) from None
        scopes = _scopes(claims)
        if self.scopes and self.scopes.isdisjoint(scopes):
            record(passage, DENIED)
            raise Forbidden(
                "insufficient scope",
                detail=f"the token has none of the scopes {self._scopes_text}",
                challenge=(
                    f'Bearer error="insufficient_scope", scope="{self._scopes_text}",'
                    ' error_description="the token has none of the required scopes"'
                ),
            )
        user = claims.get("sub")
        if not isinstance(user, str):
            client = claims.get("client_id")
            user = client if isinstance(client, str) else ""
        record(passage, ALLOWED, Principal(user, "jwt", claims=claims, scopes=scopes))
        return None

    def _invalid(self, description: str) -> Unauthorized:
        return Unauthorized(
            "invalid token",
            detail=f"authorizer {self.config.name}: {description}",
            challenge=f'Bearer error="invalid_token", error_description="{_quoted(description)}"',
        )

    async def _claims(self, token: str, passage: Passage) -> Mapping[str, object]:
        """
        The claims of a token that passes every check: from the cache for one
        verified before (its times checked again), else verified now.
        """
        if self.tokens is None:
            claims, _, _ = await self._verify(token)
            return claims
        cached = self.tokens.get(token, self.keys.keys)
        if cached is not None:
            passage.exchange.authorizer_cache = "hit"
            self._check_times(cached.claims)
            return cached.claims
        passage.exchange.authorizer_cache = "miss"
        claims, kid, key = await self._verify(token)
        expires = _number(claims, "exp")
        assert expires is not None, "_check_times refuses a token without exp"
        self.tokens.put(token, Verified(claims, kid, key, expires + self.config.clock_skew))
        return claims

    async def _verify(self, token: str) -> tuple[dict[str, object], str | None, SigningKey]:
        """
        Check C{token} in full: its claims, and the C{kid} and key that verified it.
        """
        header, claims, signing_input, signature = _split(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise InvalidToken(f"the algorithm {algorithm!s} is not allowed")
        if "crit" in header or "b64" in header:
            raise InvalidToken("the token asks for extensions this gateway does not support")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the kid is not a string")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("the token's signing key is unknown")
        if not _fits(algorithm, key.jwk.key) or key.algorithm not in (None, algorithm):
            raise InvalidToken("the token's algorithm does not match its key")
        try:
            verified = _ALGORITHMS[algorithm].verify(signing_input, key.jwk.key, signature)
        except (InvalidKeyError, TypeError, ValueError):
            verified = False
        if not verified:
            raise InvalidToken("the token's signature does not verify")
        self._check_claims(claims)
        return claims, kid, key

    def _check_claims(self, claims: Mapping[str, object]) -> None:
        if claims.get("iss") != self.config.issuer:
            raise InvalidToken("the issuer is not trusted")
        audience = claims.get("aud")
        if audience is None:
            audience = claims.get("client_id")
        if isinstance(audience, str):
            audience = [audience]
        if not isinstance(audience, list) or self._audience.isdisjoint(
            a for a in audience if isinstance(a, str)
        ):
            raise InvalidToken("the token is not for this audience")
        self._check_times(claims)

    def _check_times(self, claims: Mapping[str, object]) -> None:
        """
        C{exp} (required), C{nbf} and C{iat} against the clock, give or take C{clock_skew}.
        """
        now = self.clock.seconds()
        skew = self.config.clock_skew
        expires = _number(claims, "exp")
        if expires is None:
            raise InvalidToken("the token has no expiry")
        if expires <= now - skew:
            raise InvalidToken("the token has expired")
        not_before = _number(claims, "nbf")
        if not_before is not None and not_before > now + skew:
            raise InvalidToken("the token is not valid yet")
        issued = _number(claims, "iat")
        if issued is not None and issued > now + skew:
            raise InvalidToken("the token was issued in the future")


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_ALGORITHMS = get_default_algorithms()
"""PyJWT's signature algorithms, by name: the checks themselves are theirs (and cryptography's)."""


def _segment(text: str) -> bytes:
    if not _SEGMENT.fullmatch(text):
        raise InvalidToken("the token is not a JWS compact serialization")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _split(token: str) -> tuple[dict[str, object], dict[str, object], bytes, bytes]:
    """
    A compact JWS's header, claims, signing input and signature; checked later.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("the token is not a JWS compact serialization")
    try:
        header = json.loads(_segment(parts[0]))
        claims = json.loads(_segment(parts[1]))
        signature = _segment(parts[2])
    except ValueError:
        raise InvalidToken("the token is not a JWS compact serialization") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("the token's header or claims are not JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _fits(algorithm: str, key: object) -> bool:
    """
    Whether C{key} is of the type C{algorithm} verifies with (and its curve, for EC).
    """
    if algorithm[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    curve = _CURVES.get(algorithm)
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == curve


_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def _number(claims: Mapping[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the {name} claim is not a number")
    return float(value)


def _scopes(claims: Mapping[str, object]) -> tuple[str, ...]:
    """
    The token's scopes: C{scope} (space-separated, RFC 8693) or C{scp} (a list, or a string).
    """
    scope = claims.get("scope")
    if isinstance(scope, str):
        return tuple(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        return tuple(scp.split())
    if isinstance(scp, list):
        return tuple(s for s in scp if isinstance(s, str))
    return ()
