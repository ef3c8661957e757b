"""
ALB target events with multi-value headers on (``format = alb-multi``).

The target group attribute ``lambda.multi_value_headers.enabled``: only
``multiValueHeaders`` and ``multiValueQueryStringParameters`` are sent, each
value a list, and their presence is how adapters know the mode (they then
answer with ``multiValueHeaders``).  Everything else is as in
L{twisted_lambdagw.core.formats.alb}.
"""

from __future__ import annotations

from twisted_lambdagw.core.messages import NOT_PARSED, IncomingRequest, Reply

from . import alb


def build(request: IncomingRequest) -> bytes:
    """
    The multi-value ALB event for one request.
    """
    return alb.build_event(request, multi=True)


def parse(payload: bytes, document: object = NOT_PARSED) -> Reply:
    """
    The reply an ALB target's result means; L{MalformedReply} when it means none.
    """
    return alb.parse(payload, document)
