"""The Sphinx tree under docs/: what ``make docs`` (sphinx-build -W -n) cannot see for itself.

The build fails on a broken internal link or a missing include or marker; it cannot tell that an
example DAG is shown nowhere, or that a page names a module the package does not promise to keep.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "example_dags").glob("example_*.py"))
PAGES = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
INCLUDE = re.compile(
    r"```\{literalinclude\} \.\./example_dags/(?P<file>\S+)\n(?P<options>(?::[^\n]*\n)*)```", re.MULTILINE
)

#: the import paths the package keeps whatever its internal layout (the docs name no others)
PUBLIC_MODULES = {
    "airflow_provider_aireiter.hooks.aireiter",
    "airflow_provider_aireiter.operators.aireiter",
    "airflow_provider_aireiter.sensors.aireiter",
    "airflow_provider_aireiter.triggers.aireiter",
    "airflow_provider_aireiter.exceptions",
    "airflow_provider_aireiter.retry",
    "airflow_provider_aireiter.testing",
    "airflow_provider_aireiter.testing.emulator",
    "airflow_provider_aireiter.testing.emulator.pytest_plugin",
}


def _markers(path: Path) -> list[str]:
    starts = re.findall(r"^# \[START (\S+)\]$", path.read_text(), re.MULTILINE)
    ends = re.findall(r"^# \[END (\S+)\]$", path.read_text(), re.MULTILINE)
    assert starts == ends, f"{path.name}: unbalanced [START]/[END] markers"
    return starts


def test_every_example_dag_is_shown_in_the_docs_by_its_markers() -> None:
    included: dict[str, set[str]] = {}
    for text in PAGES.values():
        for match in INCLUDE.finditer(text):
            (start,) = re.findall(r'^:start-after: "\[START (\S+)\]"$', match["options"], re.MULTILINE)
            (end,) = re.findall(r'^:end-before: "\[END (\S+)\]"$', match["options"], re.MULTILINE)
            assert start == end, match[0]
            included.setdefault(match["file"], set()).add(start)
    assert EXAMPLES
    for path in EXAMPLES:
        markers = _markers(path)
        assert markers, f"{path.name} has no [START name] marker"
        assert included.get(path.name, set()) >= set(markers), f"{path.name} is not included by its markers"
    assert set(included) <= {path.name for path in EXAMPLES}


def test_the_docs_and_readme_name_only_public_modules() -> None:
    texts = {**PAGES, "README.md": (ROOT / "README.md").read_text()}
    for name, text in texts.items():
        for module in re.findall(r"airflow_provider_aireiter(?:\.[a-z_0-9]+)+", text):
            assert module in PUBLIC_MODULES, f"{name} names {module}"


def test_readme_is_a_front_page() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
