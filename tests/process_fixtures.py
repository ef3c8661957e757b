"""
What the tests that run real programs share: temporary directories, config
files, and an environment in which a child process runs this checkout's code
and cannot reach real AWS credentials.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import twisted_lambdagw

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout: its C{twisted/plugins} holds the dropin under test."""

SOURCE_ROOT = Path(twisted_lambdagw.__file__).resolve().parents[1]
"""Where the imported C{twisted_lambdagw} lives, so a child imports the same code."""


def temp_dir(case: SynchronousTestCase) -> Path:
    """
    A new directory outside the checkout, removed when the test ends.
    """
    path = Path(tempfile.mkdtemp(prefix="lambdagw-test-"))
    case.addCleanup(shutil.rmtree, path, True)
    return path


def write_config(directory: Path, text: str, name: str = "gw.ini") -> Path:
    """
    Write INI text to C{directory/name} and return its path.
    """
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def child_environment(home: Path) -> dict[str, str]:
    """
    An environment for a child Python: this checkout first on its path, and
    nothing from the caller's AWS setup (no variables, no C{~/.aws}).
    """
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([str(SOURCE_ROOT), str(REPO_ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def twistd_command() -> list[str]:
    """
    The argv prefix that runs this interpreter's twistd.
    """
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twist_command() -> list[str]:
    """
    The argv prefix that runs this interpreter's twist.
    """
    script = Path(sys.executable).with_name("twist")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "from twisted.application.twist._twist import Twist; Twist.main()",
    ]


def python_probe(case: SynchronousTestCase, code: str) -> Any:
    """
    Run C{code} in a fresh Python (the tests' environment, a temporary
    home) and return the JSON it printed; the test fails if it did not exit 0.
    """
    home = temp_dir(case)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    case.assertEqual(result.returncode, 0, result.stderr)
    return json.loads(result.stdout)
