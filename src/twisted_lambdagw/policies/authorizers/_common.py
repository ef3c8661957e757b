"""
What both kinds of authorizer share: reading identity sources, and the outcome record.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from twisted.web.server import Request

from ...core.authorizers import IdentitySource
from ..chain import Passage, Principal

ALLOWED = "allowed"
MISSING = "missing"
"""No credentials: a 401 without a challenge error."""
INVALID = "invalid"
"""Bad credentials (a bad token): a 401."""
DENIED = "denied"
"""Authenticated but not allowed (scope, or the authorizer said no): a 403."""
FAILED = "failed"
"""The authorizer could not decide: a 500."""
OUTCOMES = (ALLOWED, MISSING, INVALID, DENIED, FAILED)


class Ambiguous(Exception):
    """
    An identity source appears more than once: the request is refused.
    """


def identity_value(request: Request, source: IdentitySource) -> str | None:
    """
    The value of one identity source, None when absent or empty.

    Raises L{Ambiguous} when a header or query parameter is given twice:
    which one is the credential would be a guess.
    """
    if source.kind == "header":
        raw = request.requestHeaders.getRawHeaders(source.name.encode("ascii"))
        if not raw:
            return None
        if len(raw) > 1:
            raise Ambiguous(f"{source.text} appears {len(raw)} times")
        value = raw[0].decode("latin-1").strip()
        return value or None
    _, _, query = request.uri.decode("latin-1").partition("?")
    found = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == source.name]
    if len(found) > 1:
        raise Ambiguous(f"{source.text} appears {len(found)} times")
    return found[0] if found and found[0] else None


def record(passage: Passage, outcome: str, principal: Principal | None = None) -> None:
    """
    Note the authorizer's outcome (and who it let in) on the request's record.
    """
    passage.exchange.authorizer = outcome
    if principal is not None:
        passage.principal = principal
        passage.exchange.user = principal.user or None


def authorizer_document(principal: Principal | None) -> Mapping[str, object] | None:
    """
    C{requestContext.authorizer} as an HTTP API (payload 2.0) gives it.

    C{{"jwt": {"claims": ..., "scopes": ...}}} or C{{"lambda": context}};
    None for basic auth and open routes (the formats then say what they did).
    """
    if principal is None:
        return None
    if principal.source == "jwt":
        scopes = list(principal.scopes) if principal.scopes else None
        return {"jwt": {"claims": dict(principal.claims or {}), "scopes": scopes}}
    if principal.source == "lambda":
        return {"lambda": dict(principal.context or {})}
    return None
