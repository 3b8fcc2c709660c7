"""Sphinx configuration of the provider's documentation tree (``make docs``).

No autodoc: the pages describe the public import paths in prose, and building them imports nothing
from the package.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

project = "airflow-provider-aireiter"
author = "airflow-provider-aireiter developers"
copyright = "airflow-provider-aireiter developers"
# The version is read from the package's source text, not by importing it.
release = re.search(
    r'^__version__ = "([^"]+)"', (ROOT / "airflow_provider_aireiter" / "__init__.py").read_text(), re.M
)[1]  # type: ignore[index]
version = release

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Dockerfile"]

# Every heading down to ####  gets an anchor, so "[text](page.md#heading)" is a reference that
# Sphinx resolves (and, with -n -W, fails the build when the page or the heading is missing).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
nitpicky = True

html_theme = "alabaster"
html_title = f"{project} {release}"
html_static_path: list[str] = []

# The link check stays on this machine: links into the tree are checked, links to the web are not.
linkcheck_ignore = [r"https?://.*"]
linkcheck_timeout = 5
linkcheck_workers = 1
