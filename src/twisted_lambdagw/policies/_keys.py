"""
What the policy steps' config parsers need from a config section.

The parsers live beside their steps, not in C{config}; they read a section
through this protocol so that C{config} hands them its own section object
and nothing here imports it back.
"""

from __future__ import annotations

from typing import Protocol


class ConfigKeys(Protocol):
    """
    Typed access to one config section; errors name the file, section and key.
    """

    name: str

    def error(self, key: str | None, message: str) -> Exception: ...

    def text(self, key: str, default: str | None = None) -> str | None: ...

    def words(self, key: str) -> list[str]: ...

    def boolean(self, key: str, default: bool) -> bool: ...

    def duration(self, key: str, default: float) -> float: ...

    def integer(self, key: str, default: int, minimum: int = 1) -> int: ...

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str: ...
