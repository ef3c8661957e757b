"""
Event formats: how a request becomes a Lambda event and a result a reply.

Each format is a module with two pure functions, ``build`` and ``parse``.
"""

from __future__ import annotations

from typing import Protocol

from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply

from . import alb, alb_multi, apigw_v1, apigw_v2, httpjson


class EventFormat(Protocol):
    def build(self, request: IncomingRequest) -> bytes:
        """
        The Invoke payload for one request.
        """
        ...

    def parse(self, payload: bytes, document: object = NOT_PARSED) -> Reply:
        """
        The HTTP reply a function's result means, fully validated.

        C{document}, when given, is what C{payload} parsed to as JSON.

        Raises L{twisted_lambdagw.core.errors.MalformedReply} when it means none.
        """
        ...


FORMATS: dict[str, EventFormat] = {
    "httpjson": httpjson,
    "apigw-v1": apigw_v1,
    "apigw-v2": apigw_v2,
    "alb": alb,
    "alb-multi": alb_multi,
}


def get_format(name: str) -> EventFormat:
    """
    The format registered under ``name`` (a config key value).
    """
    return FORMATS[name]


__all__ = ["FORMATS", "EventFormat", "get_format"]
