"""The README page that the nav entry "AIReiter docs" opens: rendered safely, and every anchor resolves."""

from __future__ import annotations

import re
from pathlib import Path

from airflow_provider_aireiter.media_view.docs_page import docs_page, heading_slug, render_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_raw_html_and_script_links_are_not_rendered() -> None:
    html = render_markdown("<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "href=" not in html  # the javascript: link stays text
    assert "<img" not in html


def test_repository_relative_targets_are_neutralised_and_absolute_ones_kept() -> None:
    html = render_markdown(
        "See [the examples](example_dags/) and [Airflow](https://airflow.apache.org) and [up](#usage).\n\n"
        "![The media view](docs/media-view.png)\n"
    )
    assert "<a>the examples</a>" in html
    assert '<a href="https://airflow.apache.org">Airflow</a>' in html and '<a href="#usage">up</a>' in html
    assert "<img" not in html and "[The media view: docs/media-view.png in the repository]" in html


def test_tables_render_and_headings_get_github_anchors() -> None:
    html = render_markdown("## Operators & sensors (3.1+)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert '<h2 id="operators--sensors-31">' in html
    assert "<table>" in html and "<td>1</td>" in html
    assert heading_slug("Make the suite hold: `make test`") == "make-the-suite-hold-make-test"


def test_repeated_headings_get_numbered_anchors_as_on_github() -> None:
    html = render_markdown("## Setup\n\n### Setup\n\n## Setup\n\n[third](#setup-2)\n")
    assert re.findall(r'id="([^"]+)"', html) == ["setup", "setup-1", "setup-2"]


def test_every_readme_anchor_lands_on_a_heading_of_the_page() -> None:
    html = render_markdown(README.read_text(encoding="utf-8"))
    anchors = set(re.findall(r'href="#([^"]+)"', html))
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert anchors, "the README has in-page links"
    assert anchors <= ids, sorted(anchors - ids)
    assert len(ids) == len(re.findall(r' id="', html)), "every id on the page is unique"


def test_the_page_is_the_installed_package_readme() -> None:
    page = docs_page()
    assert page.startswith("<!doctype html>")
    assert '<h1 id="airflow-provider-aireiter">airflow-provider-aireiter</h1>' in page
    assert "the README of the installed package" in page
