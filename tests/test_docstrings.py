"""
One docstring style in the source: epytext, as Twisted and treq write it.

pydoctor renders C{@param}, C{L{...}} and C{C{...}}; reST field lists
(C{:param x:}) and double-backtick code in the same tree would render as
plain text beside them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import twisted_lambdagw

SOURCE = Path(twisted_lambdagw.__file__).parent

REST = re.compile(r":(param|ivar|type|raises?) \w+:|:(returns?|rtype):|``[^`]*``")


def rest_in_docstrings(source: str) -> list[tuple[int, str]]:
    """
    The line and text of each reST field or double-backtick span found in a
    docstring (any string statement) of C{source}.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            text = node.value.value
            if isinstance(text, str):
                found.extend((node.lineno, m.group(0)) for m in REST.finditer(text))
    return found


class DocstringStyleTests(SynchronousTestCase):
    def test_detects_rest(self) -> None:
        """
        The check finds a reST field and double backticks, and passes epytext.
        """
        rest = 'def f(x):\n    """\n    :param x: the ``x``.\n    """\n'
        epytext = 'def f(x):\n    """\n    @param x: the C{x}.\n    """\n'
        self.assertEqual(rest_in_docstrings(rest), [(2, ":param x:"), (2, "``x``")])
        self.assertEqual(rest_in_docstrings(epytext), [])

    def test_source_is_epytext(self) -> None:
        """
        No module's docstrings use reST fields or double-backtick code.
        """
        offenders: list[str] = []
        for path in sorted(SOURCE.rglob("*.py")):
            name = path.relative_to(SOURCE).as_posix()
            offenders.extend(
                f"{name}:{line}: {text}" for line, text in rest_in_docstrings(path.read_text())
            )
        self.assertEqual(offenders, [])
