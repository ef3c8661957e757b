"""
A function that always raises, for checking what the client is (not) told.
"""

from typing import Any


class NoteStoreUnavailable(Exception):
    pass


def handler(event: Any, context: Any) -> object:
    raise NoteStoreUnavailable("database password rejected for user admin")
