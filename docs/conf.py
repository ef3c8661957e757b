"""
Sphinx configuration for the twisted_lambdagw documentation.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(what CI runs): every warning, a broken cross-reference included, fails the
build.  The pages are MyST Markdown.
"""

project = "twisted_lambdagw"
author = "the twisted_lambdagw authors"
copyright = "the twisted_lambdagw authors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# Links such as [Basic auth](security.md#basic-auth) name a heading's slug.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# Every reference must resolve; nothing is fetched from the network.
nitpicky = True

html_theme = "alabaster"
html_title = "twisted_lambdagw"
html_static_path: list[str] = []
