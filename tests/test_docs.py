"""
The README and the pages under C{docs/} name only files and modules that
exist: a link, or a path or module name in backquotes, that a move or a
rename left behind fails here.  Sphinx checks the links between pages and
their headings when CI builds the docs (C{sphinx-build -W}, C{nitpicky});
this test needs no Sphinx, and fetches nothing from the network.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = (
    "etc",
    "examples",
    "bench",
    "src",
    "tests",
    "docs",
    "changelog.d",
    "twisted",
    "runtimes",
    ".ci",
)
BUILT = "docs/_build"

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^(```|~~~)")
_TOP = "|".join(re.escape(t) for t in TOP_LEVEL)
_PATH = re.compile(rf"(?<![\w/.-])((?:{_TOP})/[\w./-]*)")
_MODULE = re.compile(r"\btwisted_lambdagw(?:\.[A-Za-z_]\w*)+")
_REDIRECT = re.compile(r">>?\s*\S+")
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")


def _sources() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if BUILT not in p.as_posix())
    return [ROOT / "README.md", *docs]


def _code_texts(text: str) -> Iterator[str]:
    """
    The text of every inline code span and every line of a fenced block.
    """
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced:
            yield line
        else:
            yield from _CODE_SPAN.findall(line)


def repository_paths(text: str) -> set[str]:
    """
    Paths into the repository that C{text} names in code: C{etc/gw.ini},
    C{bench/run.py --quick}'s C{bench/run.py}.  Templates (C{<date>},
    C{*}, C{{...}}), the docs' build output and a file a shell command
    writes (C{>> etc/users}) are not files to look for.
    """
    found = set()
    for code in _code_texts(text):
        code = _REDIRECT.sub("", code)
        for match in _PATH.findall(code):
            path = match.rstrip(".,:;")
            if any(c in code for c in "<*{") and any(c in path for c in "<*{"):
                continue
            if path.startswith(BUILT):
                continue
            found.add(path)
    return found


def module_names(text: str) -> set[str]:
    """
    Dotted names under C{twisted_lambdagw} that C{text} names in code.
    """
    return {m for code in _code_texts(text) for m in _MODULE.findall(code)}


def relative_links(text: str) -> set[str]:
    """
    Markdown link targets that are neither URLs nor anchors on the same page.
    """
    return {
        target
        for target in _LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    }


def heading_anchors(text: str) -> set[str]:
    """
    The anchors MyST (and GitHub) make of a page's headings.
    """
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        heading = None if fenced else _HEADING.match(line)
        if heading:
            title = heading.group(2).replace("`", "").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def missing(source: Path, root: Path = ROOT) -> list[str]:
    """
    What C{source}, a document of the repository at C{root}, names that does
    not exist, one line each.
    """
    text = source.read_text(encoding="utf-8")
    name = source.relative_to(root).as_posix()
    problems = []
    for path in sorted(repository_paths(text)):
        if not (root / path).exists():
            problems.append(f"{name}: no such file: {path}")
    for target in sorted(relative_links(text)):
        file, _, anchor = target.partition("#")
        resolved = (source.parent / file).resolve()
        if not resolved.exists():
            problems.append(f"{name}: broken link: {target}")
        elif anchor and anchor not in heading_anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{name}: no heading #{anchor} in {file}")
    for dotted in sorted(module_names(text)):
        if not _resolves(dotted):
            problems.append(f"{name}: no such module or name: {dotted}")
    return problems


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


@pytest.mark.parametrize("source", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_names_only_what_exists(source: Path) -> None:
    """
    Every repository file, page, heading and module a document names exists.
    """
    assert missing(source) == []


def test_the_docs_name_files() -> None:
    """
    The checks above have something to check: the README and the pages name
    files, pages and modules, so an empty scan would mean a broken scanner.
    """
    texts = [p.read_text(encoding="utf-8") for p in _sources()]
    assert "etc/gw.ini" in set().union(*map(repository_paths, texts))
    assert "docs/configuration.md" in set().union(*map(relative_links, texts))
    assert "twisted_lambdagw.testing" in set().union(*map(module_names, texts))


def test_a_missing_file_is_found(tmp_path: Path) -> None:
    """
    A page naming a file, a page, a heading or a module that does not exist
    is reported, each on its own line; what exists is not.
    """
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "gw.ini").write_text("", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Index\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title\n\nSee `etc/no-such.ini`, [a page](nowhere.md), [a heading](index.md#nope),\n"
        "[this one](#title), `etc/gw.ini`, [the index](index.md#index),\n"
        "`twisted_lambdagw.testing` and `twisted_lambdagw.no_such_module`.\n\n"
        "```sh\ntwistd -n lambdagw --config examples/none.ini >> etc/new.log\n```\n",
        encoding="utf-8",
    )
    assert missing(page, tmp_path) == [
        "docs/page.md: no such file: etc/no-such.ini",
        "docs/page.md: no such file: examples/none.ini",
        "docs/page.md: no heading #nope in index.md",
        "docs/page.md: broken link: nowhere.md",
        "docs/page.md: no such module or name: twisted_lambdagw.no_such_module",
    ]


def test_anchors_are_myst_slugs() -> None:
    """
    Headings become the anchors MyST gives them: lower case, punctuation and
    backquotes dropped, spaces made dashes.
    """
    text = "# Using every core: `workers`\n\n```\n# not a heading\n```\n## TLS and HTTP/2\n"
    assert heading_anchors(text) == {"using-every-core-workers", "tls-and-http2"}
