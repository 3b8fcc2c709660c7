"""Credits in the media view's pages: every value of a result is hostile (an XCom can be edited).

The same attacks on a real API server, with results edited through the REST API and the pages read
in a real browser, are in ``tests/e2e/test_media_view.py``.
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from airflow_provider_aireiter.hooks.transport import credits_value, parse_submit, parse_task_info
from airflow_provider_aireiter.media_view.pages import credits_chart, gallery_page, task_instance_page
from airflow_provider_aireiter.media_view.records import Credits, MediaEntry

HOSTILE = [
    1e309,  # inf, as JSON's 1e309 reads
    -math.inf,
    math.nan,
    "<script>alert(1)</script>",
    "10",
    -5,
    -0.5,
    True,
    False,
    {"credits": 10},
    [10],
    None,
    10**400,
    -(10**400),
    1e13,
]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_credits_value_that_is_not_a_sane_number_is_unknown(value: Any) -> None:
    assert credits_value(value) is None


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (10, 10.0), (2.5, 2.5), (-0.0, 0.0), (10**12, 1e12)])
def test_a_sane_credits_value_is_kept(value: Any, expected: float) -> None:
    number = credits_value(value)
    assert number == expected and number is not None and math.copysign(1.0, number) == 1.0  # never -0


def test_the_service_answers_are_checked_the_same_way() -> None:
    assert parse_submit({"data": {"estimated_credits": "12"}}, out_task_id="t").estimated_credits == 12.0
    for odd in ("NaN", "inf", -3, "1" * 400, 10**400, True):
        assert parse_submit({"data": {"estimated_credits": odd}}, out_task_id="t").estimated_credits is None, odd
        assert parse_task_info({"status": "completed", "credits_used": odd}).credits_used is None, odd


def entry(task_id: str = "still", map_index: int = -1, used: Any = 10.0, estimated: Any = 10.0) -> MediaEntry:
    return MediaEntry(
        dag_id="d",
        run_id="r",
        task_id=task_id,
        map_index=map_index,
        out_task_id="af-x",
        model="seedream_v5_lite",
        status="completed",
        credits_used=credits_value(used),
        prompt="p",
        estimated_credits=credits_value(estimated),
    )


def _no_url(*_: Any) -> str:
    return "/file"


def _never(*_: Any) -> bool:
    return False


class _Text(HTMLParser):
    """The text of a page by element class, and every tag: what a browser would make of the markup."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.by_class: dict[str, list[str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in ("meter", "img", "br"):
            self._open.append(dict(attrs).get("class"))

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("meter", "img", "br") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for cls in filter(None, self._open):
            for name in cls.split():
                self.by_class.setdefault(name, []).append(data)


def parsed(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


def test_the_task_instance_view_shows_estimated_and_used_credits() -> None:
    page = parsed(task_instance_page("t", [entry(used=1234.5, estimated=1000)], _no_url, _never))
    assert page.by_class["estimated-credits"] == ["1,000"] and page.by_class["credits-used"] == ["1,234.5"]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_hostile_credits_value_shows_unknown_and_the_page_stays_whole(value: Any) -> None:
    html = task_instance_page("t", [entry(used=value, estimated=value)], _no_url, _never)
    page = parsed(html)
    assert page.by_class["estimated-credits"] == ["unknown"] and page.by_class["credits-used"] == ["unknown"]
    assert "script" not in page.tags and html.endswith("</body></html>")


def test_the_run_total_sums_only_valid_values_and_counts_the_unknown() -> None:
    entries = [
        entry("a", used=10, estimated=10),
        entry("b", used=100, estimated=100),
        entry("c", used="<script>", estimated=-5),
        entry("d", used=10**400, estimated=12),
        entry("e", used=1e309, estimated=True),
    ]
    html = gallery_page("Media gallery", [("run-1", entries)], _no_url, _never, None)
    page = parsed(html)
    assert page.by_class["credits-total"][0].startswith("Credits used: ")
    # used: only a and b are known; estimated: a, b and d
    assert page.by_class["credits-used"][0] == "110" and page.by_class["credits-estimated"] == ["122"]
    assert page.by_class["credits-unknown"] == [
        "(credits used unknown for 3; estimate unknown for 2 of 5 task instance(s))"
    ]
    assert "script" not in page.tags
    # The total comes first, before the first task of the run.
    assert html.index("credits-total") < html.index("data-task-id")


def test_a_run_with_all_credits_known_says_no_unknown() -> None:
    page = parsed(gallery_page("g", [("r", [entry(used=3), entry("b", used=4)])], _no_url, _never, None))
    assert page.by_class["credits-used"][0] == "7" and page.by_class["credits-unknown"] == ["(2 task instance(s))"]


def _chart_rows(html: str) -> list[dict[str, str]]:
    rows = []
    for match in re.finditer(r"<tr class='chart-run' data-spike='(\w+)'>(.*?)</tr>", html):
        meter = dict(re.findall(r"(\w+)='([^']*)'", re.search(r"<meter ([^>]*)>", match[2])[1]))  # type: ignore[index]
        rows.append({"spike": match[1], **meter, "shown": re.search(r"class='num credits-used'>([^<]*)<", match[2])[1]})  # type: ignore[index]
    return rows


def test_the_chart_has_one_meter_per_run_on_one_scale_and_the_spike_stands_out() -> None:
    runs = [
        ("run-5", Credits.of([(130.0, 130.0)])),
        ("run-4", Credits.of([(2000.0, 140.0)])),  # the spike
        ("run-3", Credits.of([(140.0, 140.0), (None, 10.0)])),
        ("run-2", Credits.of([])),  # no AIReiter task at all
        ("run-1", Credits.of([(150.0, 150.0)])),
    ]
    html = credits_chart(runs)
    rows = _chart_rows(html)
    assert [r["spike"] for r in rows] == ["false", "true", "false", "false", "false"]
    assert {r["max"] for r in rows} == {"2000.0"} and {r["min"] for r in rows} == {"0"}
    assert [r["value"] for r in rows] == ["130.0", "2000.0", "140.0", "0.0", "150.0"]
    assert [r["shown"] for r in rows] == ["130", "2,000", "140", "0", "150"]
    # Each run against the median of the others with known credits: run-4's others (130, 140, 150) have
    # 140, so over 280 is past its meter's `high`, drawn in the browser's warning colour; every other
    # run is under its own `high`, in the optimum region.
    assert (rows[1]["low"], rows[1]["high"], rows[1]["optimum"]) == ("280.0", "280.0", "0")
    assert [float(r["value"]) < float(r["high"]) for r in rows] == [True, False, True, True, True]
    assert [r["high"] for r in rows] == ["300.0", "280.0", "300.0", "290.0", "280.0"]
    text = parsed(html)
    assert "spike: over twice the median of the other runs" in html
    assert "unknown for 1 of 2" in html and "no AIReiter task" in html
    assert "script" not in text.tags


def test_two_runs_are_enough_to_show_a_spike() -> None:
    rows = _chart_rows(credits_chart([("b", Credits.of([(5040.0, 140.0)])), ("a", Credits.of([(140.0, 140.0)]))]))
    assert [r["spike"] for r in rows] == ["true", "false"]


def test_the_chart_escapes_run_ids_and_copes_with_no_credits() -> None:
    html = credits_chart([("<script>alert(1)</script>", Credits.of([(None, None)])), ("r", Credits.of([]))])
    assert "<script>" not in html and "&lt;script&gt;" in html
    rows = _chart_rows(html)
    assert [(r["value"], r["max"], r["spike"]) for r in rows] == [("0.0", "1.0", "false")] * 2
    assert all("low" not in r for r in rows)  # no run with known credits: no spike threshold
