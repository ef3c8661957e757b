"""
The JWT authorizer's cache of verified tokens: a repeat is a lookup, and nothing more is let in.
"""

from __future__ import annotations

import base64

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_lambdagw.core.errors import Unauthorized
from twisted_lambdagw.policies.authorizers.jwks import REFRESH_INTERVAL, KeySet
from twisted_lambdagw.policies.authorizers.tokens import TokenCache, Verified

from .idp_fixtures import new_key, public_jwk
from .test_authz_jwt import Setup


def forged(token: str) -> str:
    """
    C{token} with its signature's first byte changed: the same header and claims, unsigned.
    """
    header, claims, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0xFF
    return f"{header}.{claims}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


class CachedTokenTests(TestCase):
    timeout = 20

    async def test_repeat_is_a_hit(self) -> None:
        """
        The second request with a token finds it verified; both see the same claims.
        """
        s = Setup(self)
        await s.start()
        token = s.idp.token({"scope": "read"})
        first = await s.run(token)
        second = await s.run(token)
        self.assertEqual(
            (first.exchange.authorizer_cache, second.exchange.authorizer_cache), ("miss", "hit")
        )
        assert first.principal is not None and second.principal is not None
        self.assertEqual(second.principal.claims, first.principal.claims)
        self.assertEqual((second.principal.user, second.principal.scopes), ("alice", ("read",)))
        self.assertEqual(len(s.tokens), 1)

    async def test_expiry_after_caching(self) -> None:
        """
        A cached token is refused once it expires (give or take clock_skew),
        and its entry is dropped then.
        """
        s = Setup(self, clock_skew=30.0)
        await s.start()
        token = s.idp.token()  # expires in 300s
        await s.run(token)
        s.clock.advance(320)
        p = await s.run(token)
        self.assertEqual(p.exchange.authorizer_cache, "hit")
        s.clock.advance(15)
        error, p = await s.refused(self, token, Unauthorized)
        self.assertIn("the token has expired", dict(error.response_headers())["WWW-Authenticate"])
        self.assertEqual(len(s.tokens), 0)

    async def test_not_yet_valid_is_not_cached(self) -> None:
        """
        A token refused for its times is not kept; once valid, it is verified again.
        """
        s = Setup(self)
        await s.start()
        now = s.clock.seconds()
        token = s.idp.token({"nbf": int(now) + 60})
        await s.refused(self, token, Unauthorized)
        self.assertEqual(len(s.tokens), 0)
        s.clock.advance(60)
        p = await s.run(token)
        self.assertEqual(p.exchange.authorizer_cache, "miss")

    async def test_rotated_out_key(self) -> None:
        """
        When the issuer's key set no longer holds the key that verified a
        token, the token is verified again, and refused.
        """
        s = Setup(self, discovery=False)
        await s.start()
        token = s.idp.token({"exp": int(s.clock.seconds()) + 3600})
        await s.run(token)
        # A refresh that brings the same keys keeps the cache.
        fetch = s.next_fetch()
        s.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(await fetch, "ok")
        self.assertEqual((await s.run(token)).exchange.authorizer_cache, "hit")
        s.idp.rotate()
        fetch = s.next_fetch()
        s.clock.advance(REFRESH_INTERVAL)
        self.assertEqual(await fetch, "ok")
        self.assertEqual(len(s.tokens), 0)
        error, p = await s.refused(self, token, Unauthorized)
        self.assertEqual(p.exchange.authorizer_cache, "miss")
        self.assertIn("signing key is unknown", dict(error.response_headers())["WWW-Authenticate"])
        s.keys.stop()

    async def test_no_poisoning(self) -> None:
        """
        A token whose signature does not verify is never kept, before or after
        the genuine one with the same header and claims is.
        """
        s = Setup(self)
        await s.start()
        token = s.idp.token()
        bad = forged(token)
        self.assertNotEqual(bad, token)
        for _ in range(2):
            await s.refused(self, bad, Unauthorized)
        self.assertEqual(len(s.tokens), 0)
        await s.run(token)
        await s.run(token)
        error, p = await s.refused(self, bad, Unauthorized)
        self.assertEqual(p.exchange.authorizer_cache, "miss")
        self.assertIn("does not verify", dict(error.response_headers())["WWW-Authenticate"])
        self.assertEqual(len(s.tokens), 1)
        # Signed, but for another audience: refused, and not kept either.
        await s.refused(self, s.idp.token({"aud": "elsewhere"}), Unauthorized)
        self.assertEqual(len(s.tokens), 1)


class TokenCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.jwk = public_jwk(new_key("p256"), "k1")
        self.keys = KeySet.parse({"keys": [self.jwk]})

    def entry(self, drop_at: float = 100.0) -> Verified:
        key = self.keys.find("k1")
        assert key is not None
        return Verified({"sub": "alice"}, "k1", key, drop_at)

    def test_bounded_lru(self) -> None:
        """
        Past its size the least recently used entry goes first.
        """
        cache = TokenCache(self.clock, size=2)
        for token in ("a", "b"):
            cache.put(token, self.entry())
        self.assertIsNotNone(cache.get("a", self.keys))
        cache.put("c", self.entry())
        self.assertEqual(
            [cache.get(t, self.keys) is not None for t in ("a", "b", "c")], [True, False, True]
        )
        self.assertEqual(len(cache), 2)

    def test_drop_at(self) -> None:
        cache = TokenCache(self.clock)
        cache.put("a", self.entry(drop_at=10.0))
        self.clock.advance(9.9)
        self.assertIsNotNone(cache.get("a", self.keys))
        self.clock.advance(0.1)
        self.assertIsNone(cache.get("a", self.keys))
        self.assertEqual(len(cache), 0)

    def test_key_identity(self) -> None:
        """
        An entry holds while the key set holds the very key that verified it:
        a refresh with the same JWK keeps it, a new key under the same kid does not.
        """
        cache = TokenCache(self.clock)
        cache.put("a", self.entry())
        same = KeySet.parse({"keys": [dict(self.jwk)]}, self.keys)
        self.assertTrue(same.same_as(self.keys))
        cache.forget_keys(same)
        self.assertIsNotNone(cache.get("a", same))
        replaced = KeySet.parse({"keys": [public_jwk(new_key("p256"), "k1")]}, self.keys)
        self.assertFalse(replaced.same_as(self.keys))
        self.assertIsNone(cache.get("a", replaced))
        self.assertIsNone(cache.get("a", None))
