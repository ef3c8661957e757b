"""
The records made for every request: read-only to the type checker, cheap to make.

A ``dataclass(frozen=True)`` refuses assignment at run time, and pays for it
when made: its ``__init__`` sets every field through ``object.__setattr__``,
several times the cost of a plain assignment.  The gateway makes a handful
of such records for each request (the request as formats see it, the
invocation, its result, the reply, the client's origin, the route's
target), and as frozen dataclasses they were about 5 % of its instructions
per request (``bench/instructions.py``: 1.129 M, against 1.069 M as records).

L{record} makes a slotted dataclass that type checkers treat as frozen
(PEP 681's ``frozen_default``): assigning to a field is an error in the
project's strict mypy run, as it is for a frozen dataclass.  At run time the
class is a plain slotted dataclass that compares and hashes by value, as a
frozen one does.  Configuration, made once, stays in frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from typing_extensions import dataclass_transform

__all__ = ["record"]

_Class = TypeVar("_Class")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_Class]) -> type[_Class]:
    """
    C{cls} as a slotted dataclass, read-only to type checkers, hashed by value.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)
