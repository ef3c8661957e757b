"""
Where the Node.js runtime comes from: ``node`` and AWS's ``aws-lambda-ric``.

``NAME.mjs`` and ``NAME.js`` functions run under the Node.js runtime
interface client AWS publishes on npm (``aws-lambda-ric``), the same one
its Node.js base images run: ``node .../aws-lambda-ric/bin/index.mjs
NAME.handler`` in the functions directory, talking to the worker's Runtime
API.  The client is an npm package with native code (built by ``npm ci``),
so it lives in an npm folder of its own: ``runtimes/node/`` in a checkout
(``package.json`` and its lock), or wherever ``[local] node_runtime`` says.

This module imports nothing of the gateway, so that the config reader can
use it to report a missing runtime as a config error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PACKAGE = "aws-lambda-ric"
ENTRY = os.path.join("bin", "index.mjs")
SUFFIXES = (".mjs", ".js")
"""A function ``NAME`` is ``NAME.mjs`` or ``NAME.js``, as Lambda's Node.js runtimes look."""

BUNDLED = Path(__file__).resolve().parents[3] / "runtimes" / "node"
"""The npm folder of a source checkout (absent from an installed wheel)."""


def how_to_install() -> str:
    """
    What to do when the client is missing, for a config error.
    """
    if (BUNDLED / "package.json").is_file():
        return f"run npm ci in {BUNDLED}, or set [local] node_runtime"
    return f"npm install {PACKAGE} in a folder and set [local] node_runtime to it"


def find_node(name: str = "node", path: str | None = None) -> str | None:
    """
    The absolute path of the ``node`` executable, looked up on ``path``
    (by default the PATH environment variable) like a shell.
    """
    found = shutil.which(name, path=path)
    return os.path.abspath(found) if found is not None else None


def find_client(runtime_dir: str) -> str | None:
    """
    The client's entry point (``bin/index.mjs``) in ``runtime_dir``.

    ``runtime_dir`` is an npm folder with ``aws-lambda-ric`` installed in its
    ``node_modules``, or the package's own directory.  The native part must
    have been built: a package whose install scripts did not run is not a
    client at all.
    """
    for package in (os.path.join(runtime_dir, "node_modules", PACKAGE), runtime_dir):
        try:
            with open(os.path.join(package, "package.json"), encoding="utf-8") as f:
                name = json.load(f).get("name")
        except (OSError, ValueError, AttributeError):
            continue
        entry = os.path.join(package, ENTRY)
        built = os.path.join(package, "dist", "rapid-client.node")
        if name == PACKAGE and os.path.isfile(entry) and os.path.isfile(built):
            return os.path.abspath(entry)
    return None


def node_functions(functions_dir: str) -> list[str]:
    """
    The file names in ``functions_dir`` that are Node.js functions, sorted.
    """
    try:
        names = os.listdir(functions_dir)
    except OSError:
        return []
    return sorted(name for name in names if name.endswith(SUFFIXES) and not name.startswith("."))
