"""
Tokens a JWT authorizer has verified, kept so that a repeat costs a lookup.

Checking a signature is most of a JWT authorizer's cost, and a client sends
the same token with every request until it expires.  An entry is made only
once a token passed every check (signature, algorithm, issuer, audience,
times), keyed by the exact token string, so a token whose signature does not
verify never has one.  An entry holds the key that verified it: if the
issuer's key set no longer holds that very key (rotated out, or replaced
under the same C{kid}) the entry is void.  It is also dropped once the token
has expired (C{exp} plus the authorizer's C{clock_skew}), and the least
recently used entry goes first past L{MAX_TOKENS}.  The time claims are
still checked on every request by the authorizer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from .jwks import KeySet, SigningKey

MAX_TOKENS = 10_000
"""Verified tokens kept per authorizer."""


@dataclass(frozen=True, slots=True)
class Verified:
    """
    A token that passed every check, and what it was checked with.
    """

    claims: Mapping[str, object]
    kid: str | None
    key: SigningKey
    """The key that verified its signature: the entry holds while the key set holds it."""
    drop_at: float
    """When the token is past its C{exp} and the clock skew: the entry is of no more use."""


class TokenCache:
    """
    The verified tokens of one JWT authorizer, by their exact text; a bounded LRU.

    @param clock: when entries expire.
    @param size: at most this many entries; the least recently used goes first.
    """

    def __init__(self, clock: IReactorTime, size: int = MAX_TOKENS) -> None:
        self._clock = clock
        self._size = size
        self._entries: OrderedDict[str, Verified] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, keys: KeySet | None) -> Verified | None:
        """
        The entry for C{token}, if it still holds against C{keys} (the issuer's keys now).
        """
        entry = self._entries.get(token)
        if entry is None:
            return None
        if (
            keys is None
            or keys.find(entry.kid) is not entry.key
            or self._clock.seconds() >= entry.drop_at
        ):
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return entry

    def put(self, token: str, entry: Verified) -> None:
        """
        Keep C{entry} for C{token}, which passed every check just now.
        """
        self._entries[token] = entry
        self._entries.move_to_end(token)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget_keys(self, keys: KeySet) -> None:
        """
        Drop the entries whose key C{keys} no longer holds: the issuer rotated its keys.
        """
        for token, entry in list(self._entries.items()):
            if keys.find(entry.kid) is not entry.key:
                del self._entries[token]
