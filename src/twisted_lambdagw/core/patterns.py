"""
The two small languages of a route's config: function-name globs
(``include``/``exclude``) and ``header_upstream`` templates.

Pure functions, no I/O: the config checks them when it is read, routing
applies them to each request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
PLACEHOLDERS = frozenset({"remote", "host", "scheme", "method", "path", "uri", "request_id"})
_GLOB = re.compile(r"\*|\*?[A-Za-z0-9_-]+\*?")


@dataclass(frozen=True, slots=True)
class HeaderTemplate:
    """
    One ``header_upstream`` line: a header name and a value with placeholders.
    """

    name: str
    template: str

    def expand(self, values: Mapping[str, str]) -> str:
        """
        The value with each ``{placeholder}`` replaced from ``values``.
        """
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)


def parse_header_template(line: str) -> HeaderTemplate:
    """
    Parse ``Name value with {placeholders}``; raise ValueError when invalid.
    """
    # Name and value are split at the first run of blanks (a space or a tab,
    # as between Caddyfile tokens); the value keeps its inner spacing.
    name, *rest = re.split(r"[ \t]+", line.strip(), maxsplit=1)
    value = rest[0] if rest else ""
    if not HEADER_NAME.fullmatch(name):
        raise ValueError(f"not a header name: {name!r}")
    if not value:
        raise ValueError(f"header {name!r} has no value")
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"header {name!r} value holds a control character")
    for placeholder in PLACEHOLDER.findall(value):
        if placeholder not in PLACEHOLDERS:
            known = " ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
            raise ValueError(f"unknown placeholder {{{placeholder}}} (known: {known})")
    return HeaderTemplate(name=name, template=value)


def parse_glob(word: str) -> str:
    """
    Validate an include/exclude glob: ``abc``, ``abc*``, ``*abc``, ``*abc*``, ``*``.
    """
    if not _GLOB.fullmatch(word):
        raise ValueError(
            f"not a name glob: {word!r} ('*' only at the start or end, or alone;"
            " names hold letters, digits, '-' and '_')"
        )
    return word


def glob_matches(glob: str, name: str) -> bool:
    """
    Whether ``name`` matches one validated glob.
    """
    if glob == "*":
        return True
    starts, ends = glob.startswith("*"), glob.endswith("*")
    core = glob.strip("*")
    if starts and ends:
        return core in name
    if ends:
        return name.startswith(core)
    if starts:
        return name.endswith(core)
    return name == glob


def accepts(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """
    The original's acceptance rule: any include must match (when there are
    includes), and no exclude may.
    """
    include = list(include)
    if include and not any(glob_matches(g, name) for g in include):
        return False
    return not any(glob_matches(g, name) for g in exclude)
