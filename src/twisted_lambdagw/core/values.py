"""
The shapes of values the config checks: function names, ARNs, regions, durations.

Shared by L{twisted_lambdagw.core.config} and the authorizer sections it reads
(L{twisted_lambdagw.core.authorizers}).
"""

from __future__ import annotations

import re
from typing import Protocol

BACKENDS = ("aws", "local")
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
QUALIFIER = re.compile(r"\$LATEST|[A-Za-z0-9_-]{1,128}")
FUNCTION_ARN = re.compile(
    r"arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12})"
    r":function:(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?"
)
REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+-\d+")
DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?", re.IGNORECASE)
DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


class Section(Protocol):
    """
    One config section, as L{twisted_lambdagw.core.config_reader} reads it.
    """

    def error(self, key: str | None, message: str) -> Exception: ...
    def text(self, key: str, default: str | None = None) -> str | None: ...
    def words(self, key: str) -> list[str]: ...
    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str: ...
    def boolean(self, key: str, default: bool) -> bool: ...


def invocation_keys(s: Section, has_local: bool) -> tuple[str, str | None, str | None, str | None]:
    """
    The keys of a section whose function the gateway invokes (a route, a
    Lambda authorizer): C{backend}, C{aws_access}, C{aws_secret} and
    C{aws_region}, checked alike for both.
    """
    backend = s.choice("backend", BACKENDS, "aws")
    if backend == "local" and not has_local:
        raise s.error("backend", "'local' needs a [local] section")
    aws_access, aws_secret = s.text("aws_access"), s.text("aws_secret")
    if (aws_access is None) != (aws_secret is None):
        key = "aws_secret" if aws_secret is None else "aws_access"
        raise s.error(key, "aws_access and aws_secret go together")
    aws_region = s.text("aws_region")
    if aws_region is not None and not REGION.fullmatch(aws_region):
        raise s.error("aws_region", f"not an AWS region: {aws_region!r}")
    return backend, aws_access, aws_secret, aws_region
