"""
The ``lambdagw`` command for operators: check a config file, hash a password.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from twisted_lambdagw.core.authorizers import describe
from twisted_lambdagw.core.config import Config, ConfigError, load_config


def route_table(config: Config) -> str:
    """
    The routes, one line each, longest prefix first (the order they match in).
    """
    lines = []
    for route in sorted(config.routes, key=lambda r: len(r.prefix), reverse=True):
        target = route.single or f"{route.name_prepend}<name>{route.name_append}"
        where = route.region if route.backend == "aws" else "local"
        qualifier = f":{route.qualifier}" if route.qualifier else ""
        streamed = (
            f", stream (idle {route.stream_idle_timeout:g}s, prelude {route.stream_prelude})"
            if route.stream
            else ""
        )
        lines.append(
            f"{route.prefix:<24} -> {target}{qualifier}  "
            f"[{route.backend} {where}, {route.format}, auth={route.auth},"
            f" timeout={route.timeout:g}s{streamed}]"
        )
        authorizers = {a.name: a for a in config.authorizers}
        if route.auth in authorizers:
            lines.append(f"{'':<24}    {describe(authorizers[route.auth], route.scopes)}")
    return "\n".join(lines)


def read_password(args: argparse.Namespace, stdin: TextIO, ask: Callable[[str], str]) -> str:
    """
    The new password: one line from stdin, or typed twice without echo.
    """
    if args.stdin:
        line = stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = ask(f"Password for {args.user}: ")
    second = ask("Again: ")
    if first != second:
        raise ValueError("the passwords do not match")
    return first


def passwd(
    args: argparse.Namespace,
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
    ask: Callable[[str], str],
) -> int:
    from twisted_lambdagw.policies.auth import hash_password, user_name_problem

    problem = user_name_problem(args.user)
    if problem is not None:
        print(f"lambdagw passwd: {problem}", file=err)
        return 1
    try:
        password = read_password(args, stdin, ask).rstrip("\r")
        line = f"{args.user}:{hash_password(password.encode('utf-8'), args.rounds)}"
    except (ValueError, EOFError) as e:
        print(f"lambdagw passwd: {e or 'no password given'}", file=err)
        return 1
    print(line, file=out)
    return 0


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = load_config(args.config)
        from twisted.internet.testing import MemoryReactor

        from .tap import check_auth, check_endpoints

        check_endpoints(config, MemoryReactor())
        check_auth(config)
    except ConfigError as e:
        print(f"lambdagw: {e}", file=err)
        return 1
    print(f"{args.config}: OK, {len(config.routes)} route(s)", file=out)
    print(route_table(config), file=out)
    return 0


def main(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    *,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] = getpass.getpass,
) -> int:
    """
    Run one ``lambdagw`` command; return its exit status.

    The streams default to the process's own, looked up when called so that
    a caller's redirection is honoured; ``ask`` reads a password without echo.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = argparse.ArgumentParser(prog="lambdagw", description="twisted_lambdagw tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="validate a config file and print its routes")
    check_parser.add_argument("--config", "-c", default="etc/gw.ini")
    passwd_parser = commands.add_parser(
        "passwd", help="print a users-file line (user:bcrypt-hash) for a new password"
    )
    passwd_parser.add_argument("user")
    passwd_parser.add_argument(
        "--stdin", action="store_true", help="read the password as one line from stdin"
    )
    passwd_parser.add_argument(
        "--rounds", type=int, default=12, choices=range(10, 17), metavar="10..16",
        help="bcrypt cost (default 12)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    if args.command == "check":
        return check(args, out, err)
    if args.command == "passwd":
        return passwd(args, stdin if stdin is not None else sys.stdin, out, err, ask)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
