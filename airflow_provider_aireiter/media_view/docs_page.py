"""The provider's README as a page inside Airflow: what the nav entry "AIReiter docs" opens.

The text is the installed package's long description (its README at build time), so the page always
matches the version that is installed and needs nothing outside the API server. Raw HTML in the
Markdown is escaped, not rendered; markdown-it's link check drops ``javascript:``-style URLs. Links
and images relative to the repository (``example_dags/...``, ``docs/*.png``) have nothing to point
at inside Airflow: links keep their text without an href, images become a short note.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape
from importlib.metadata import PackageNotFoundError, metadata

from markdown_it import MarkdownIt
from markdown_it.token import Token

from airflow_provider_aireiter.get_provider_info import PACKAGE_NAME as DISTRIBUTION
from airflow_provider_aireiter.media_view.pages import page

_ABSOLUTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)
_STYLE = """
body { max-width: 980px; line-height: 1.5; }
pre { overflow-x: auto; padding: 8px; border-radius: 6px; background: #8882; }
code { font-size: 13px; } table { border-collapse: collapse; } td, th { border: 1px solid #8886; padding: 4px 8px; }
"""


def heading_slug(text: str) -> str:
    """The anchor GitHub gives a heading, so the README's ``[...](#callbacks)`` links work here too."""
    kept = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return kept.replace(" ", "-")


def _rewrite(tokens: list[Token]) -> None:
    used: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and index + 1 < len(tokens):
            slug = heading_slug(tokens[index + 1].content)
            # A repeated heading gets "-1", "-2", ... as on GitHub, so every id on the page is unique.
            seen = used.get(slug, 0)
            used[slug] = seen + 1
            token.attrSet("id", f"{slug}-{seen}" if seen else slug)
        children = token.children or []
        for child_index, child in enumerate(children):
            target = child.attrGet("href") if child.type == "link_open" else child.attrGet("src")
            if child.type not in ("link_open", "image") or target is None or _ABSOLUTE.match(str(target)):
                continue
            if child.type == "link_open":
                del child.attrs["href"]
            else:
                note = f"[{child.content or 'image'}: {target} in the repository]"
                children[child_index] = Token("text", "", 0, content=note)


def render_markdown(text: str) -> str:
    """HTML of ``text``: CommonMark with tables, raw HTML escaped, repository-relative targets neutralised."""
    parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    tokens = parser.parse(text)
    _rewrite(tokens)
    return str(parser.renderer.render(tokens, parser.options, {}))


@lru_cache(maxsize=1)
def docs_page() -> str:
    """The whole page; the installed README does not change while the API server runs."""
    try:
        info = metadata(DISTRIBUTION).json  # the body (the README) is its "description"
        text, version = str(info.get("description") or ""), str(info.get("version") or "unknown")
    except PackageNotFoundError:  # pragma: no cover - the plugin is only loaded from the installed package
        text, version = "", "unknown"
    if not text.strip():
        body = f"<h1>{escape(DISTRIBUTION)}</h1><p class='empty' id='empty'>This installation has no README.</p>"
    else:
        body = render_markdown(text)
    footer = f"<p class='muted'>{escape(DISTRIBUTION)} {escape(version)}, the README of the installed package.</p>"
    return page(f"{DISTRIBUTION} documentation", body + footer, extra_style=_STYLE)
