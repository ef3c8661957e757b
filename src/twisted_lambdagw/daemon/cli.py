"""
The C{lambdagw} command for operators: check a config file, hash a password.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from twisted_lambdagw.core.config import ConfigError
from twisted_lambdagw.core.config_reader import load_config


def read_password(args: argparse.Namespace, stdin: TextIO, ask: Callable[[str], str]) -> str:
    """
    The new password: typed twice without echo at a terminal, else one line from stdin.

    A stdin that is not a terminal (a pipe, a file, C{/dev/null}) is read
    as if C{--stdin} were given, rather than asking getpass to prompt where
    no one can answer (it would warn, then read stdin with echo anyway).
    """
    if args.stdin or not stdin.isatty():
        line = stdin.readline()
        if not line:
            raise ValueError(
                "no password on stdin (it is read from there, as one line, when stdin"
                " is not a terminal or --stdin is given)"
            )
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
    except ValueError as e:
        print(f"lambdagw passwd: {e}", file=err)
        return 1
    except EOFError:
        # getpass at a terminal that was closed (Ctrl-D).
        print("lambdagw passwd: no password given (end of input)", file=err)
        return 1
    print(line, file=out)
    return 0


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = load_config(args.config)
        from twisted.internet.testing import MemoryReactor

        from twisted_lambdagw.gateway import check_aws_routes

        from .tap import check_auth, check_endpoints

        check_endpoints(config, MemoryReactor())
        check_auth(config)
        endpoints = check_aws_routes(config)
        from .describe import describe_chains, route_table

        chains = describe_chains(config)
    except ConfigError as e:
        print(f"lambdagw: {e}", file=err)
        return 1
    print(f"{args.config}: OK, {len(config.routes)} route(s)", file=out)
    print(route_table(config, endpoints, chains), file=out)
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
    Run one C{lambdagw} command; return its exit status.

    The streams default to the process's own, looked up when called so that
    a caller's redirection is honoured; C{ask} reads a password without echo.
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
        "--stdin",
        action="store_true",
        help="read the password as one line from stdin (done anyway when it is not a terminal)",
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
