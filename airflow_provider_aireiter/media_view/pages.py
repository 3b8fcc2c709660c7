"""HTML of the media view and the gallery: server-rendered, no script, every value escaped."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from itertools import groupby
from urllib.parse import urlsplit

from airflow_provider_aireiter.media_view.records import MediaEntry, MediaFile

#: ``(entry, file, thumbnail_width or None) -> URL`` of the file route for one output.
FileUrl = Callable[[MediaEntry, MediaFile, "int | None"], str]
_STYLE = """
:root { color-scheme: light dark; font-family: system-ui, sans-serif; font-size: 14px; }
body { margin: 12px; }
h1 { font-size: 18px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 20px 0 8px; }
.entry { border: 1px solid #8884; border-radius: 8px; padding: 12px; margin-bottom: 16px; }
.files { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 8px; }
.file { max-width: 100%; } .file img, .file video { max-width: min(100%, 960px); max-height: 70vh; display: block; }
.grid .file img, .grid .file video { width: 240px; height: 160px; object-fit: cover; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dt { opacity: .7; } dd { margin: 0; overflow-wrap: anywhere; }
.empty { padding: 24px; border: 1px dashed #8886; border-radius: 8px; }
.muted { opacity: .7; }
"""


def page(title: str, body: str, extra_style: str = "") -> str:
    """A whole HTML document: the view's style, ``title`` escaped, ``body`` as given (already HTML)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}{extra_style}</style></head>"
        f"<body>{body}</body></html>"
    )


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover - the loop always returns


def _location(file: MediaFile, servable: bool) -> str:
    if file.path and servable:
        return escape(file.path)
    if file.path:
        return (
            f"{escape(file.path)} <span class='muted'>(not served: not a media file the provider stored for "
            "this task instance under the media roots the administrator allowed)</span>"
        )
    return "not stored (no <code>output_path</code>)"


def _service_link(url: str | None) -> str | None:
    """A link to the service's URL of an output that was not stored (http(s) only; the server never redirects)."""
    try:
        scheme = urlsplit(url or "").scheme.lower()
    except ValueError:  # not a URL at all (an edited result may hold anything)
        return None
    if not url or scheme not in ("http", "https"):
        return None
    return (
        f"<a class='service-link' href='{escape(url)}' target='_blank' rel='noopener noreferrer'>"
        "open it at the service</a> <span class='muted'>(the service's URL, outside Airflow; it may expire)</span>"
    )


def _file_html(entry: MediaEntry, file: MediaFile, src: str | None, full: str | None, servable: bool) -> str:
    label = f"{entry.task_id} output {file.index}"
    link = _service_link(file.url) if src is None else None
    if src is None:
        media = f"<p>{link}</p>" if link else "<p class='muted'>Nothing to show: no stored file.</p>"
    elif file.kind == "image":
        media = f"<a href='{escape(full or src)}' target='_blank'><img src='{escape(src)}' alt='{escape(label)}'></a>"
    elif file.kind == "video":
        media = (
            f"<video controls preload='metadata' src='{escape(src)}' aria-label='{escape(label)}'>"
            "Your browser cannot play this video.</video>"
        )
    else:
        media = f"<a href='{escape(src)}'>download</a>"
    return (
        f"<div class='file' data-kind='{file.kind}'>{media}<dl>"
        f"<dt>size</dt><dd>{escape(human_size(file.size))}</dd>"
        f"<dt>type</dt><dd>{escape(file.content_type or 'unknown')}</dd>"
        f"<dt>stored at</dt><dd>{_location(file, servable)}</dd></dl></div>"
    )


def _entry_html(
    entry: MediaEntry, file_url: FileUrl, servable: Callable[[MediaEntry, MediaFile], bool], thumb: int | None
) -> str:
    files = []
    for file in entry.files:
        ok = servable(entry, file)
        src = file_url(entry, file, thumb if file.kind == "image" else None) if ok else None
        full = file_url(entry, file, None) if ok else None
        files.append(_file_html(entry, file, src, full, ok))
    where = "" if entry.map_index < 0 else f" [map index {entry.map_index}]"
    credits = "unknown" if entry.credits_used is None else str(entry.credits_used)
    return (
        f"<section class='entry' data-map-index='{entry.map_index}'>"
        f"<h2>{escape(entry.task_id)}{escape(where)}</h2><dl>"
        f"<dt>prompt</dt><dd>{escape(entry.prompt or 'not recorded')}</dd>"
        f"<dt>model</dt><dd>{escape(str(entry.model))}</dd>"
        f"<dt>status</dt><dd>{escape(str(entry.status))}</dd>"
        f"<dt>credits</dt><dd>{escape(credits)}</dd>"
        f"<dt>AIReiter task</dt><dd>{escape(entry.out_task_id)}</dd></dl>"
        f"<div class='files'>{''.join(files) or '<p class=muted>The task returned no outputs.</p>'}</div>"
        "</section>"
    )


def task_instance_page(
    title: str,
    entries: list[MediaEntry],
    file_url: FileUrl,
    servable: Callable[[MediaEntry, MediaFile], bool],
) -> str:
    if not entries:
        body = (
            f"<h1>{escape(title)}</h1><div class='empty' id='empty'>"
            "<p><strong>No AIReiter output for this task instance.</strong></p>"
            "<p class='muted'>This view shows the images and videos of AIReiter operators and sensors once they "
            "have finished. This task instance has not finished yet, failed, or is not an AIReiter task.</p></div>"
        )
    else:
        body = f"<h1>{escape(title)}</h1>" + "".join(_entry_html(e, file_url, servable, None) for e in entries)
    return page(title, body)


def gallery_page(
    title: str,
    runs: Iterable[tuple[str, list[MediaEntry]]],
    file_url: FileUrl,
    servable: Callable[[MediaEntry, MediaFile], bool],
    thumb: int | None,
) -> str:
    parts = [f"<h1>{escape(title)}</h1>"]
    shown = 0
    for run_id, entries in runs:
        parts.append(f"<h2 class='run'>Run {escape(run_id)}</h2>")
        if not entries:
            parts.append("<p class='muted'>No AIReiter output in this run.</p>")
            continue
        for task_id, group in groupby(entries, key=lambda e: e.task_id):
            group_entries = list(group)
            shown += len(group_entries)
            parts.append(f"<div class='grid task' data-task-id='{escape(task_id)}'>")
            parts.extend(_entry_html(e, file_url, servable, thumb) for e in group_entries)
            parts.append("</div>")
    if len(parts) == 1:
        parts.append("<div class='empty' id='empty'><p><strong>No runs to show.</strong></p></div>")
    elif shown == 0:
        parts.insert(1, "<div class='empty' id='empty'><p><strong>No AIReiter output.</strong></p></div>")
    return page(title, "".join(parts))
