"""
The ``lambdagw`` command for operators: check a config file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
        lines.append(
            f"{route.prefix:<24} -> {target}{qualifier}  "
            f"[{route.backend} {where}, {route.format}, auth={route.auth},"
            f" timeout={route.timeout:g}s]"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
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
            print(f"lambdagw: {e}", file=sys.stderr)
            return 1
        print(f"{args.config}: OK, {len(config.routes)} route(s)")
        print(route_table(config))
        return 0
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
