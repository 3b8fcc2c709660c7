"""HTML of the media view and the gallery: server-rendered, no script, every value escaped."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from html import escape
from itertools import groupby
from urllib.parse import urlsplit

from airflow_provider_aireiter.media_view.records import Credits, MediaEntry, MediaFile

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
.credits-chart meter { width: 360px; height: 18px; } .credits-chart td, .credits-chart th { padding: 1px 8px; }
.credits-chart th { text-align: left; font-weight: normal; } .num { text-align: right; }
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


def format_credits(value: float | None) -> str:
    """``1,234.5``; ``unknown`` for ``None`` (the values are :func:`~.records.credits`: 0 to 10^12)."""
    return "unknown" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")


def _credits_total(total: Credits) -> str:
    """One line: the credits used and estimated of a run's task instances, and how many were unknown."""
    if not total.tasks:
        return ""
    unknown = [
        f"credits used unknown for {total.unknown_used}" if total.unknown_used else "",
        f"estimate unknown for {total.unknown_estimated}" if total.unknown_estimated else "",
    ]
    of = f"{'; '.join(u for u in unknown if u)} of " if any(unknown) else ""
    return (
        f"<p class='credits-total'>Credits used: <strong class='credits-used'>{format_credits(total.used)}</strong>"
        f" &middot; estimated at submit: <span class='credits-estimated'>{format_credits(total.estimated)}</span>"
        f" <span class='muted credits-unknown'>({of}{total.tasks} task instance(s))</span></p>"
    )


def credits_chart(rows: list[tuple[str, Credits]]) -> str:
    """Credits used per run, newest first: one ``<meter>`` a run, drawn by the browser (no script).

    Every bar has the same scale (the largest run shown). A run that used more than twice the median
    of the other runs with known credits is a spike: its bar is past its meter's ``high``, which the
    browser draws in its warning colour (the others are in the optimum region), and it says so.
    """
    known = [(i, c.used) for i, (_, c) in enumerate(rows) if c.tasks > c.unknown_used]
    top = max((c.used for _, c in rows), default=0.0) or 1.0
    lines = []
    for i, (run_id, total) in enumerate(rows):
        others = [used for j, used in known if j != i]
        threshold = 2 * statistics.median(others) if others else 0.0
        bounds = f" low='{threshold!r}' high='{threshold!r}' optimum='0'" if threshold > 0 else ""
        spike = threshold > 0 and total.used > threshold
        notes = ["spike: over twice the median of the other runs" if spike else "", _unknown_note(total)]
        lines.append(
            f"<tr class='chart-run' data-spike='{str(spike).lower()}'><th scope='row'>{escape(run_id)}</th>"
            f"<td><meter min='0' max='{top!r}' value='{total.used!r}'{bounds} "
            f"aria-label='{escape(f'credits used by run {run_id}')}'></meter></td>"
            f"<td class='num credits-used'>{format_credits(total.used)}</td>"
            f"<td class='muted'>{escape('; '.join(n for n in notes if n))}</td></tr>"
        )
    return (
        f"<h2>Credits used per run (newest {len(rows)} first)</h2>"
        f"<table class='credits-chart' id='credits-chart'>{''.join(lines)}</table>"
    )


def _unknown_note(total: Credits) -> str:
    if not total.tasks:
        return "no AIReiter task"
    return f"unknown for {total.unknown_used} of {total.tasks}" if total.unknown_used else ""


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
    return (
        f"<section class='entry' data-map-index='{entry.map_index}'>"
        f"<h2>{escape(entry.task_id)}{escape(where)}</h2><dl>"
        f"<dt>prompt</dt><dd>{escape(entry.prompt or 'not recorded')}</dd>"
        f"<dt>model</dt><dd>{escape(str(entry.model))}</dd>"
        f"<dt>status</dt><dd>{escape(str(entry.status))}</dd>"
        f"<dt>estimated credits</dt><dd class='estimated-credits'>{format_credits(entry.estimated_credits)}</dd>"
        f"<dt>credits used</dt><dd class='credits-used'>{format_credits(entry.credits_used)}</dd>"
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
    chart: str = "",
) -> str:
    """The gallery of some runs, each with its credits total first; ``chart`` (HTML) comes before them."""
    parts = [f"<h1>{escape(title)}</h1>", chart]
    shown = 0
    for run_id, entries in runs:
        parts.append(f"<h2 class='run'>Run {escape(run_id)}</h2>")
        parts.append(_credits_total(Credits.of((e.credits_used, e.estimated_credits) for e in entries)))
        if not entries:
            parts.append("<p class='muted'>No AIReiter output in this run.</p>")
            continue
        for task_id, group in groupby(entries, key=lambda e: e.task_id):
            group_entries = list(group)
            shown += len(group_entries)
            parts.append(f"<div class='grid task' data-task-id='{escape(task_id)}'>")
            parts.extend(_entry_html(e, file_url, servable, thumb) for e in group_entries)
            parts.append("</div>")
    if len(parts) == 2:
        parts.append("<div class='empty' id='empty'><p><strong>No runs to show.</strong></p></div>")
    elif shown == 0:
        parts.insert(2, "<div class='empty' id='empty'><p><strong>No AIReiter output.</strong></p></div>")
    return page(title, "".join(parts))
