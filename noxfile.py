"""
The test suite against the newest dependencies and against the lowest that
C{pyproject.toml} declares: C{nox -s latest lowest}.  CI runs C{lowest}
beside the README's test command, which installs the newest.

C{lowest} pins every runtime dependency to the minimum it declares
(C{name>=X} becomes C{name==X}): a declared minimum is a version the tests
pass with, or it is not declared.  Test-only tools resolve as usual.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
MINIMUM = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)")


def lowest_pins(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """
    C{name==minimum} for each runtime dependency that declares a minimum.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = MINIMUM.match(requirement)
        if match is not None:
            pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


_INSTALLED = """
import importlib.metadata, sys
from packaging.version import Version
pins = [line.split("==") for line in sys.argv[1:]]
found = {name: importlib.metadata.version(name) for name, _ in pins}
print("runtime dependencies:", ", ".join(f"{n} {v}" for n, v in found.items()))
wrong = [f"{n} {found[n]} (minimum {v})" for n, v in pins if Version(found[n]) != Version(v)]
sys.exit("not at the declared minimum: " + ", ".join(wrong) if wrong else 0)
"""


def _suite(session: nox.Session, pins: list[str] | None = None) -> None:
    if pins is not None:
        # The session proves it runs what it claims: each pin is installed.
        session.run("python", "-c", _INSTALLED, *pins)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def latest(session: nox.Session) -> None:
    """
    The newest release of every dependency.
    """
    session.install("--upgrade", "-e", ".[test]")
    _suite(session)


@nox.session
def lowest(session: nox.Session) -> None:
    """
    Every runtime dependency at the minimum C{pyproject.toml} declares.
    """
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(lowest_pins()) + "\n")
    session.install("-c", str(constraints), "-e", ".[test]")
    _suite(session, lowest_pins())
