"""
The shapes of values the config checks: function names, ARNs, regions, durations.

Shared by L{twisted_lambdagw.core.config} and the authorizer sections it reads
(L{twisted_lambdagw.core.authorizers}).
"""

from __future__ import annotations

import re

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
