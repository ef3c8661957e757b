"""
Typed access to one section of the configuration file: each value parsed as
a boolean, a size, a duration... and any mistake one L{ConfigError} line.
"""

from __future__ import annotations

from collections.abc import Mapping

from .config import (
    FALSE,
    SIZE,
    SIZE_UNITS,
    TRUE,
    ConfigError,
)

# Re-exported: these names were always config's.
from .values import BACKENDS as BACKENDS
from .values import DURATION as DURATION
from .values import DURATION_UNITS as DURATION_UNITS
from .values import FUNCTION_ARN as FUNCTION_ARN
from .values import FUNCTION_NAME as FUNCTION_NAME
from .values import QUALIFIER as QUALIFIER
from .values import REGION as REGION


class Section:
    """
    Typed access to one section, remembering which keys were used.
    """

    def __init__(self, path: str, name: str, values: Mapping[str, str], allowed: set[str]):
        self.path = path
        self.name = name
        self._values = {k: v.strip() for k, v in values.items()}
        for key in self._values:
            if key not in allowed:
                raise self.error(key, "unknown key")

    def error(self, key: str | None, message: str) -> ConfigError:
        where = f"[{self.name}] {key}" if key else f"[{self.name}]"
        return ConfigError(f"{self.path}: {where}: {message}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._values.get(key)
        return value if value else default

    def lines(self, key: str) -> list[str]:
        value = self._values.get(key, "")
        return [line.strip() for line in value.splitlines() if line.strip()]

    def words(self, key: str) -> list[str]:
        return self._values.get(key, "").split()

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        assert value is not None
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise self.error(key, f"not a boolean: {value!r} (use yes/no, true/false, on/off, 1/0)")

    def size(self, key: str, default: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        match = SIZE.fullmatch(value)
        if match is None:
            raise self.error(key, f"not a size: {value!r} (use e.g. 6MB, 512KB, 1024)")
        unit = match["unit"].lower() if match["unit"] else None
        return int(match["number"]) * SIZE_UNITS[unit]

    def duration(self, key: str, default: float) -> float:
        value = self.text(key)
        if value is None:
            return default
        match = DURATION.fullmatch(value)
        seconds = 0.0
        if match is not None:
            unit = match["unit"].lower() if match["unit"] else None
            seconds = float(match["number"]) * DURATION_UNITS[unit]
        if seconds <= 0:
            raise self.error(key, f"not a positive duration: {value!r} (use e.g. 30, 30s, 2m)")
        return seconds

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        value = self.text(key)
        if value is None:
            return default
        if not value.isdigit() or int(value) < minimum:
            raise self.error(key, f"not an integer of at least {minimum}: {value!r}")
        return int(value)

    def url_path(self, key: str, default: str | None) -> str | None:
        value = self.text(key, default)
        if value is None or value.lower() in FALSE:
            return None
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise self.error(key, f"must be a path starting with '/': {value!r}")
        return value
