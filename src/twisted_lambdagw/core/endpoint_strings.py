"""
The syntax of Twisted endpoint strings, as ``listen`` lines are written.

Kept apart from L{twisted_lambdagw.daemon.listen}, which builds endpoints
with Twisted, so that the config reader can take the file names in a
``listen`` line from the config file's directory without importing Twisted.
"""

from __future__ import annotations

from collections.abc import Callable


def split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    An endpoint description's positional and ``key=value`` parameters.

    The syntax is Twisted's: parameters are separated by ``:``, the first
    ``=`` in a parameter separates its key from its value, and a backslash
    makes the next character literal (``privateKey=C\\:\\\\tls\\\\key.pem``).
    A key given twice is an error rather than silently the last one.
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    key: str | None = None
    current: list[str] = []

    def end_parameter() -> None:
        value = "".join(current)
        if key is None:
            args.append(value)
        elif key in kwargs:
            raise ValueError(f"option {key!r} is given twice")
        else:
            kwargs[key] = value

    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            end_parameter()
            key, current = None, []
        elif char == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(char)
    end_parameter()
    return args, kwargs


SSL_FILE_OPTIONS = ("privateKey", "certKey", "extraCertChain", "dhParameters")
"""The ``ssl:`` options that name files."""


def resolve_files(description: str, resolve: Callable[[str], str]) -> str:
    """
    ``description`` with the file names in it passed through ``resolve``.

    The files are the key and certificate options of an ``ssl:`` endpoint
    and the address of a ``unix:`` one; other endpoints, and descriptions
    without relative file names, are returned unchanged.
    """
    args, kwargs = split_description(description)
    kind = args[0].lower() if args else ""
    changed = False
    if kind == "ssl":
        for key in SSL_FILE_OPTIONS:
            if key in kwargs and kwargs[key] != resolve(kwargs[key]):
                kwargs[key], changed = resolve(kwargs[key]), True
    elif kind == "unix":
        if len(args) > 1 and args[1] != resolve(args[1]):
            args[1], changed = resolve(args[1]), True
        if "address" in kwargs and kwargs["address"] != resolve(kwargs["address"]):
            kwargs["address"], changed = resolve(kwargs["address"]), True
    if not changed:
        return description
    parts = [_escape(arg) for arg in args]
    parts.extend(f"{key}={_escape(value)}" for key, value in kwargs.items())
    return ":".join(parts)


def _escape(value: str) -> str:
    return "".join("\\" + char if char in "\\:=" else char for char in value)
