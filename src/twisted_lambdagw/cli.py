"""
The ``lambdagw`` command for operators: check a config file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .config import Config, ConfigError, load_config


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
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """
    Run one ``lambdagw`` command; return its exit status.

    C{stdout} and C{stderr} default to the process's own streams, looked up
    when called so that a caller's redirection is honoured.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = argparse.ArgumentParser(prog="lambdagw", description="twisted_lambdagw tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a config file and print its routes")
    check.add_argument("--config", "-c", default="etc/gw.ini")
    args = parser.parse_args(argv)

    if args.command == "check":
        try:
            config = load_config(args.config)
            from twisted.internet.testing import MemoryReactor

            from .tap import check_endpoints

            check_endpoints(config, MemoryReactor())
        except ConfigError as e:
            print(f"lambdagw: {e}", file=err)
            return 1
        print(f"{args.config}: OK, {len(config.routes)} route(s)", file=out)
        print(route_table(config), file=out)
        return 0
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
