"""The media view and gallery on a real deployment: real HTTP to the API server, Airflow's own auth.

The deployment runs without ``simple_auth_manager_all_admins``, so requests without credentials are
refused, and with ``RestrictedAuthManager`` (restricted_auth.py), where user ``outsider`` may read no DAG.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.e2e.browser import screenshot
from tests.e2e.deployment import AirflowDeployment, Connection, Setup, direct_session, wait_for

DAGS = Path(__file__).parent / "media_dags"
DOCS = Path(__file__).resolve().parents[2] / "docs"
REVIEW = Path(__file__).resolve().parents[2] / "example_dags" / "example_review_before_publish.py"
MOUNT = "/aireiter-media"

SETUP = Setup(
    name="media-view",
    dag_files=[DAGS / "media_dags.py", REVIEW],
    emulator={"durations": {"*": (1.0, 2.0)}, "credits": 100_000},
    connections={"aireiter_default": Connection()},
    serve_media=True,
    env={
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.e2e.restricted_auth.RestrictedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,outsider:viewer",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    },
)


def _successful_run(dep: AirflowDeployment) -> str:
    run = dep.trigger("media_view")
    assert dep.wait_for_run("media_view", run, timeout=300) == "success"
    return run


@pytest.fixture(scope="module")
def run_id(deployment: AirflowDeployment) -> str:
    return _successful_run(deployment)


@pytest.fixture(scope="module")
def spike_run(deployment: AirflowDeployment, run_id: str) -> str:
    """A second run that cost far more: its video's credits edited to 5000, as if it had been a long one.

    (The emulator charges every task of a model the same, so no real run of this DAG costs more.)
    """
    second = _successful_run(deployment)
    clip = deployment.xcom("media_view", second, "clip")
    _edit_result(deployment, second, "clip", {**clip, "credits_used": 5000})
    return second


@pytest.fixture(scope="module")
def anonymous() -> requests.Session:
    return direct_session()


def _get(dep: AirflowDeployment, path: str, **params: Any) -> requests.Response:
    return dep.request("GET", path, params=params)


def _srcs(html: str) -> list[str]:
    return [unescape(src) for src in re.findall(r"src='([^']+)'", html)]


def _ti_page(dep: AirflowDeployment, run_id: str, task_id: str, map_index: str = "{MAP_INDEX}") -> str:
    resp = _get(dep, f"{MOUNT}/ti", dag_id="media_view", run_id=run_id, task_id=task_id, map_index=map_index)
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["content-type"].startswith("text/html")
    return resp.text


def test_plugin_declares_its_views(deployment: AirflowDeployment) -> None:
    plugins = deployment.api("GET", "/api/v2/plugins")["plugins"]
    media = next(p for p in plugins if p["name"] == "aireiter_media")
    destinations = {v["destination"]: v["href"] for v in media["external_views"]}
    assert set(destinations) == {"task_instance", "dag_run", "dag", "nav"}
    assert destinations["task_instance"].startswith("aireiter-media/ti?")
    assert destinations["nav"] == "aireiter-media/docs"
    assert {a["url_prefix"] for a in media["fastapi_apps"]} == {MOUNT}


def test_image_task_shows_its_image_with_prompt_model_credits(
    deployment: AirflowDeployment, run_id: str, media: Path
) -> None:
    html = _ti_page(deployment, run_id, "still")
    result = deployment.xcom("media_view", run_id, "still")
    stored = result["outputs"][0]["path"]
    assert "A lighthouse at dawn, watercolor" in html
    assert result["credits_used"] == result["estimated_credits"] == 10  # the emulator's price of this model
    assert "seedream_v5_lite" in html and "<dd class='estimated-credits'>10</dd>" in html
    assert "<dd class='credits-used'>10</dd>" in html
    assert stored in unescape(html) and str(media) in stored
    (src,) = _srcs(html)
    assert src.startswith(f"{MOUNT}/file?") and "width=" not in src
    image = _get(deployment, src)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == Path(stored.removeprefix("file://")).read_bytes()


def test_video_is_served_with_ranges(deployment: AirflowDeployment, run_id: str) -> None:
    html = _ti_page(deployment, run_id, "clip")
    assert "<video controls" in html and "Waves rolling in at dusk" in html
    (src,) = _srcs(html)
    stored = Path(deployment.xcom("media_view", run_id, "clip")["outputs"][0]["path"].removeprefix("file://"))
    data = stored.read_bytes()
    whole = _get(deployment, src)
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = deployment.request("GET", src, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = deployment.request("GET", src, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = deployment.request("GET", src, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_mapped_task_has_one_entry_per_map_index(deployment: AirflowDeployment, run_id: str) -> None:
    html = _ti_page(deployment, run_id, "batch")
    assert re.findall(r"data-map-index='(-?\d+)'", html) == ["0", "1"]
    assert "A red kite" in html and "A blue kite" in html
    one = _ti_page(deployment, run_id, "batch", map_index="1")
    assert re.findall(r"data-map-index='(-?\d+)'", one) == ["1"] and "A red kite" not in one


def test_task_without_aireiter_output_shows_the_empty_state(deployment: AirflowDeployment, run_id: str) -> None:
    html = _ti_page(deployment, run_id, "plain")
    assert "id='empty'" in html and "No AIReiter output for this task instance" in html
    assert "id='empty'" not in _ti_page(deployment, run_id, "still")


def test_output_not_stored_is_a_link_to_the_service_never_a_redirect(
    deployment: AirflowDeployment, run_id: str, emulator: Emulator
) -> None:
    html = _ti_page(deployment, run_id, "not_stored")
    assert "not stored" in html and _srcs(html) == []
    url = deployment.xcom("media_view", run_id, "not_stored")["outputs"][0]["url"]
    assert url.startswith(emulator.base_url)
    assert f"<a class='service-link' href='{url}' target='_blank' rel='noopener noreferrer'>" in unescape(html)
    file_route = _get(
        deployment, f"{MOUNT}/file", dag_id="media_view", run_id=run_id, task_id="not_stored", map_index="-1", n="0"
    )
    assert file_route.status_code == 404 and "location" not in file_route.headers


def test_gallery_groups_the_run_by_task_with_thumbnails(deployment: AirflowDeployment, run_id: str) -> None:
    from PIL import Image

    resp = _get(deployment, f"{MOUNT}/run", dag_id="media_view", run_id=run_id)
    assert resp.status_code == 200
    html = resp.text
    assert re.findall(r"data-task-id='([^']+)'", html) == ["batch", "clip", "forged", "not_stored", "still"]
    # The run's credits at the top: 10 (still) + 100 (clip) + 2 x 10 (batch) + 10 (not_stored); the
    # forged result holds none.
    assert html.index("class='credits-total'") < html.index("data-task-id")
    assert "Credits used: <strong class='credits-used'>140</strong>" in html
    assert "estimated at submit: <span class='credits-estimated'>140</span>" in html
    assert "(credits used unknown for 1; estimate unknown for 1 of 6 task instance(s))" in html
    thumbs = [src for src in _srcs(html) if "width=320" in src]
    assert len(thumbs) == 3  # still and the two batch images; the video and the unstored one are not thumbnailed
    full = _get(deployment, thumbs[0].replace("&width=320", ""))
    thumb = _get(deployment, thumbs[0])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as small, Image.open(io.BytesIO(full.content)) as big:
        assert max(small.size) <= 320 < max(big.size)
    assert len(thumb.content) < len(full.content)
    bad = _get(deployment, thumbs[0].replace("width=320", "width=5000"))
    assert bad.status_code == 422 and "width=5000 is not allowed; allowed: 160, 320, 640" in bad.text


def _chart(html: str) -> list[tuple[str, str, str]]:
    """``(run id, meter value, spike)`` of each row of the DAG gallery's credits chart."""
    rows = re.findall(
        r"<tr class='chart-run' data-spike='(\w+)'><th scope='row'>([^<]*)</th><td><meter [^>]*value='([^']*)'", html
    )
    return [(unescape(run), value, spike) for spike, run, value in rows]


def test_dag_gallery_lists_runs_newest_first_under_a_credits_chart(
    deployment: AirflowDeployment, run_id: str, spike_run: str
) -> None:
    resp = _get(deployment, f"{MOUNT}/dag", dag_id="media_view")
    assert resp.status_code == 200
    runs = [unescape(r) for r in re.findall(r"<h2 class='run'>Run ([^<]+)</h2>", resp.text)]
    assert runs[:2] == [spike_run, run_id]
    assert _chart(resp.text)[:2] == [(spike_run, "5040.0", "true"), (run_id, "140.0", "false")]
    assert resp.text.index("id='credits-chart'") < resp.text.index("<h2 class='run'>")


def test_task_state_store_holds_the_remote_task_and_its_credits(deployment: AirflowDeployment, run_id: str) -> None:
    """Airflow 3.3's task state store, read back through Airflow's own REST API (what its UI tab shows)."""
    for task_id in ("still", "clip"):
        result = deployment.xcom("media_view", run_id, task_id)
        store = deployment.api("GET", f"/api/v2/dags/media_view/dagRuns/{run_id}/taskInstances/{task_id}/state-store")
        assert {e["key"]: e["value"] for e in store["task_state_store"]} == {
            "aireiter": {
                "out_task_id": result["out_task_id"],
                "estimated_credits": result["estimated_credits"],
                "credits_used": result["credits_used"],
            }
        }, task_id


ROUTES = ["ti", "run", "dag", "file"]


@pytest.mark.parametrize("route", ROUTES)
def test_no_session_is_401_and_a_user_without_read_access_is_403(
    deployment: AirflowDeployment, run_id: str, anonymous: requests.Session, route: str
) -> None:
    params = {"dag_id": "media_view", "run_id": run_id, "task_id": "still", "map_index": "-1", "n": "0"}
    url = f"{deployment.api_url}{MOUNT}/{route}"
    assert anonymous.get(url, params=params, timeout=30).status_code == 401
    outsider = deployment.login_token("outsider")
    denied = anonymous.get(url, params=params, headers={"Authorization": f"Bearer {outsider}"}, timeout=30)
    assert denied.status_code == 403
    # The UI's session cookie, which a same-origin iframe sends, is enough.
    admin = deployment.login_token("admin")
    assert anonymous.get(url, params=params, cookies={"_token": admin}, timeout=30).status_code == 200
    assert anonymous.get(url, params=params, cookies={"_token": outsider}, timeout=30).status_code == 403


def test_docs_page_is_the_installed_readme_for_anyone_signed_in(
    deployment: AirflowDeployment, anonymous: requests.Session
) -> None:
    url = f"{deployment.api_url}{MOUNT}/docs"
    assert anonymous.get(url, timeout=30).status_code == 401
    # Reading the docs needs no DAG access: the user who may read no DAG gets the page.
    outsider = deployment.login_token("outsider")
    resp = anonymous.get(url, cookies={"_token": outsider}, timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert '<h1 id="airflow-provider-aireiter">airflow-provider-aireiter</h1>' in html
    assert '<h2 id="callbacks">Callbacks</h2>' in html
    # Every in-page link of the README lands on a heading of the page.
    ids = set(re.findall(r'id="([^"]+)"', html))
    anchors = set(re.findall(r'href="#([^"]+)"', html))
    assert anchors and anchors <= ids, sorted(anchors - ids)


def test_only_recorded_outputs_of_that_task_instance_are_served(deployment: AirflowDeployment, run_id: str) -> None:
    base = {"dag_id": "media_view", "run_id": run_id, "map_index": "-1"}
    # A result dict can claim any path; a path that is not an output name the provider writes is not opened.
    forged = _get(deployment, f"{MOUNT}/file", **base, task_id="forged", n="0")
    assert forged.status_code == 404 and "root:" not in forged.text
    assert "not served: not a media file the provider stored" in _ti_page(deployment, run_id, "forged")
    # No path is taken from the request: traversal in any parameter finds no output.
    for task_id in ("../../../../etc/passwd", "still/../forged", "%2e%2e%2fetc"):
        resp = _get(deployment, f"{MOUNT}/file", **base, task_id=task_id, n="0")
        assert resp.status_code == 404, (task_id, resp.text[:200])
    assert _get(deployment, f"{MOUNT}/file", **base, task_id="still", n="../../etc/passwd").status_code == 422
    assert _get(deployment, f"{MOUNT}/file", **base, task_id="still", n="1").status_code == 404
    encoded = deployment.request("GET", f"{MOUNT}/file/..%2f..%2fetc%2fpasswd")
    assert encoded.status_code == 404 and "root:" not in encoded.text


def _add_connection(dep: AirflowDeployment, conn_id: str, host: str, api_key: str) -> None:
    """An AIReiter connection as the UI's form saves it: the hidden port field is not sent (a null port)."""
    dep.api(
        "POST",
        "/api/v2/connections",
        json={"connection_id": conn_id, "conn_type": "aireiter", "host": host, "password": api_key},
    )


def _row_test_body(conn: dict[str, Any]) -> dict[str, Any]:
    """What the connection list's row Test button posts (Airflow 3.3.2 UI): ``port: Number(null)`` is 0."""
    return {
        "conn_type": conn["conn_type"],
        "connection_id": conn["connection_id"],
        "description": conn.get("description") or "",
        "extra": conn.get("extra") or "{}",
        "host": conn.get("host") or "",
        "login": conn.get("login") or "",
        "password": conn.get("password") or "",
        "port": 0,
        "schema": conn.get("schema") or "",
    }


@pytest.mark.parametrize(
    ("key", "ok", "says"), [(None, True, "the API key was accepted"), ("wrong", False, "rejected")]
)
def test_row_test_button_of_a_form_made_connection(
    deployment: AirflowDeployment, emulator: Emulator, key: str | None, ok: bool, says: str
) -> None:
    conn_id = f"row_test_{ok}"
    # As the form saves it: the hidden port field is not sent, so the stored port is null.
    _add_connection(deployment, conn_id, emulator.base_url, key or emulator.api_key)
    stored = deployment.api("GET", f"/api/v2/connections/{conn_id}")
    assert stored["port"] is None and stored["password"] != (key or emulator.api_key)
    resp = deployment.request("POST", "/api/v2/connections/test", json=_row_test_body(stored))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] is ok and says in resp.json()["message"], resp.json()
    # Another connection type is left to Airflow's own check (which refuses port 0 against a null port).
    other = {**_row_test_body(stored), "conn_type": "generic"}
    deployment.api(
        "PATCH",
        f"/api/v2/connections/{conn_id}",
        json={**stored, "conn_type": "generic", "password": None},
        params={"update_mask": "conn_type"},
    )
    assert deployment.request("POST", "/api/v2/connections/test", json=other).status_code == 400


# ---------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.e2e.browser import chromium

    with chromium() as driver:
        yield driver


def _login(driver: Any, dep: AirflowDeployment, user: str = "admin") -> None:
    """Sign in through the UI's login form, with the password Airflow generated for ``user``."""
    from selenium.webdriver.common.by import By

    password = dep.password(user)
    driver.delete_all_cookies()
    driver.get(f"{dep.api_url}/auth/login")
    wait_for("the login form", lambda: driver.find_elements(By.NAME, "username"))
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("the session cookie", lambda: driver.get_cookie("_token"))


def _open_plugin_tab(driver: Any, url: str) -> None:
    """Open a UI page with a plugin tab and switch into its iframe once the page in it has loaded."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    driver.get(url)
    frame = wait_for(
        "the plugin's iframe", lambda: driver.find_elements(By.CSS_SELECTOR, "iframe[src*='aireiter-media']")
    )
    driver.switch_to.frame(frame[0])
    wait_for("the media page", lambda: driver.find_elements(By.CSS_SELECTOR, "h1"))


def _admin_opens(driver: Any, dep: AirflowDeployment, url: str) -> None:
    """Signed in as admin, open a UI page with a plugin tab (into its iframe)."""
    _login(driver, dep)
    _open_plugin_tab(driver, url)


def _wait_for_script(driver: Any, what: str, script: str) -> Any:
    """Wait until ``script`` (run in the current frame) returns something truthy; that value."""
    return wait_for(what, lambda: driver.execute_script(script))


def _screenshot_page(driver: Any, name: str) -> None:
    """A screenshot of the whole UI page, the plugin's iframe in it."""
    driver.switch_to.default_content()
    screenshot(driver, name)


def _ui_run_url(dep: AirflowDeployment, run_id: str) -> str:
    from urllib.parse import quote

    return f"{dep.api_url}/dags/media_view/runs/{quote(run_id, safe='')}"


def test_browser_media_view_shows_the_image_and_plays_the_video(
    browser: Any, deployment: AirflowDeployment, run_id: str
) -> None:
    _admin_opens(browser, deployment, f"{_ui_run_url(deployment, run_id)}/tasks/still/plugin/aireiter-media")
    width = _wait_for_script(
        browser,
        "the image to decode",
        "const i = document.querySelector('img'); return i && i.complete && i.naturalWidth",
    )
    assert width > 0
    assert "A lighthouse at dawn, watercolor" in browser.page_source
    _screenshot_page(browser, "media-view-image")

    _open_plugin_tab(browser, f"{_ui_run_url(deployment, run_id)}/tasks/clip/plugin/aireiter-media")
    state = _wait_for_script(
        browser,
        "the video's metadata",
        "const v = document.querySelector('video');"
        "return v && !v.error && v.readyState >= 1 && v.duration > 0 && [v.readyState, v.duration, v.currentSrc]",
    )
    assert "/aireiter-media/file?" in state[2]
    # It plays: time advances (muted, so headless autoplay rules allow it).
    browser.execute_script("const v = document.querySelector('video'); v.muted = true; v.play();")
    _wait_for_script(browser, "the video to play", "return document.querySelector('video').currentTime > 0")
    _screenshot_page(browser, "media-view-video")


def test_browser_gallery_and_empty_state(browser: Any, deployment: AirflowDeployment, run_id: str) -> None:
    _admin_opens(browser, deployment, f"{_ui_run_url(deployment, run_id)}/plugin/aireiter-run-gallery")
    decoded = _wait_for_script(
        browser,
        "the gallery's thumbnails to decode",
        "const imgs = [...document.querySelectorAll('img')];"
        "return imgs.length >= 3 && imgs.every(i => i.complete && i.naturalWidth > 0) && imgs.length",
    )
    assert decoded == 3  # thumbnails of the three stored images (the unstored one is a link)
    assert browser.execute_script("return document.querySelectorAll('a.service-link').length") == 1
    assert browser.execute_script("return document.querySelectorAll('video').length") == 1
    total = browser.execute_script("return document.querySelector('.credits-total').innerText")
    assert total.startswith("Credits used: 140 · estimated at submit: 140"), total
    _screenshot_page(browser, "run-gallery")
    _open_plugin_tab(browser, f"{_ui_run_url(deployment, run_id)}/tasks/plain/plugin/aireiter-media")
    assert "No AIReiter output for this task instance" in browser.page_source


def _meter_colour(meter: Any) -> tuple[int, int, int]:
    """The colour the browser filled a ``<meter>`` with: its pixel 4 px into the bar, halfway down."""
    from PIL import Image

    with Image.open(io.BytesIO(meter.screenshot_as_png)) as image:
        rgb = image.convert("RGB")
        return rgb.getpixel((4, rgb.height // 2))  # type: ignore[return-value]


def test_browser_dag_gallery_chart_makes_the_spike_stand_out(
    browser: Any, deployment: AirflowDeployment, run_id: str, spike_run: str
) -> None:
    from selenium.webdriver.common.by import By

    _admin_opens(browser, deployment, f"{deployment.api_url}/dags/media_view/plugin/aireiter-dag-gallery")
    rows = _wait_for_script(
        browser,
        "the credits chart",
        "return [...document.querySelectorAll('#credits-chart tr')].map(r => [r.querySelector('th').innerText,"
        " r.querySelector('meter').value, r.querySelector('meter').max, r.innerText])",
    )
    assert [row[:3] for row in rows[:2]] == [[spike_run, 5040, 5040], [run_id, 140, 5040]]
    assert "spike: over twice the median of the other runs" in rows[0][3] and "spike" not in rows[1][3]
    # The browser draws the two bars in different colours: the spike past its meter's `high`, the other
    # in the optimum region (Chromium: red and green).
    spike, normal = (_meter_colour(m) for m in browser.find_elements(By.CSS_SELECTOR, "#credits-chart meter")[:2])
    assert spike != normal and spike[0] > spike[1] and normal[1] > normal[0], (spike, normal)
    browser.switch_to.default_content()
    if os.environ.get("AIREITER_DOCS_SCREENSHOTS") == "1":  # renew the picture of the docs' media view page
        browser.save_screenshot(str(DOCS / "credits-gallery.png"))
    _screenshot_page(browser, "dag-gallery-credits")


def test_browser_task_state_store_tab_shows_the_remote_task(
    browser: Any, deployment: AirflowDeployment, run_id: str
) -> None:
    """Airflow 3.3's own Task State Store tab of the task instance shows what the operator kept there."""
    result = deployment.xcom("media_view", run_id, "still")
    _login(browser, deployment)
    browser.get(f"{_ui_run_url(deployment, run_id)}/tasks/still/task-state-store")
    wait_for("the task state store's row", lambda: result["out_task_id"] in browser.page_source, timeout=60)
    assert "estimated_credits" in browser.page_source and "credits_used" in browser.page_source
    screenshot(browser, "task-state-store")


def test_browser_docs_from_the_nav(browser: Any, deployment: AirflowDeployment) -> None:
    from selenium.webdriver.common.by import By

    _admin_opens(browser, deployment, f"{deployment.api_url}/plugin/aireiter-docs")
    assert browser.find_element(By.CSS_SELECTOR, "h1").text == "airflow-provider-aireiter"
    # A README anchor link scrolls within the iframe to its heading.
    browser.find_element(By.CSS_SELECTOR, "a[href='#callbacks']").click()
    _wait_for_script(browser, "the callbacks heading", "return location.hash === '#callbacks'")
    _screenshot_page(browser, "provider-docs")


def test_browser_row_test_button(browser: Any, deployment: AirflowDeployment, emulator: Emulator) -> None:
    from selenium.webdriver.common.by import By

    for conn_id, key in (("ui_right_key", emulator.api_key), ("ui_wrong_key", "wrong-key")):
        _add_connection(deployment, conn_id, emulator.base_url, key)
    _login(browser, deployment)
    for conn_id, expected in (
        ("ui_right_key", "the API key was accepted"),
        ("ui_wrong_key", "rejected the API key: paste a valid key"),
    ):
        browser.get(f"{deployment.api_url}/connections")
        row_xpath = f"//tr[.//*[normalize-space()='{conn_id}']]"

        def rows(xpath: str = row_xpath) -> list[Any]:
            return list(browser.find_elements(By.XPATH, xpath))

        row = wait_for(f"the row of {conn_id}", rows)[0]
        buttons = row.find_elements(By.XPATH, ".//button[contains(@aria-label, 'Test')]")
        assert buttons, row.get_attribute("outerHTML")[:2000]
        buttons[0].click()

        def answered(text: str = expected) -> bool:
            return text in browser.page_source

        wait_for(f"the Test answer for {conn_id}", answered)
        screenshot(browser, f"connection-test-{conn_id}")


def test_browser_without_session_and_without_access(browser: Any, deployment: AirflowDeployment, run_id: str) -> None:
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    query = urlencode({"dag_id": "media_view", "run_id": run_id, "task_id": "still", "map_index": "-1"})
    page = f"{deployment.api_url}{MOUNT}/ti?{query}"
    browser.delete_all_cookies()
    browser.get(page)
    assert "Not authenticated" in browser.find_element(By.TAG_NAME, "body").text
    _login(browser, deployment, "outsider")
    browser.get(page)
    assert "Forbidden" in browser.find_element(By.TAG_NAME, "body").text
    _login(browser, deployment)
    browser.get(f"{deployment.api_url}{MOUNT}/file?{query.replace('still', 'forged')}&n=0")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "not a media file the provider stored" in body and "root:" not in body


# ---------------------------------------------------------------------- attacks: the API server as a boundary


@pytest.fixture(scope="module")
def attack_run(deployment: AirflowDeployment) -> str:
    """A run of its own whose results the attacks edit (the other tests keep theirs)."""
    return _successful_run(deployment)


def _edit_result(dep: AirflowDeployment, run_id: str, task_id: str, value: dict[str, Any]) -> None:
    """What any user with XCom edit rights on the DAG can do through Airflow's REST API."""
    dep.api(
        "PATCH",
        f"/api/v2/dags/media_view/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        json={"value": value, "map_index": -1},
    )
    assert dep.xcom("media_view", run_id, task_id) == value


def _file(dep: AirflowDeployment, run_id: str, task_id: str, method: str = "GET", **extra: Any) -> requests.Response:
    params = {"dag_id": "media_view", "run_id": run_id, "task_id": task_id, "map_index": "-1", "n": "0", **extra}
    return dep.request(method, f"{MOUNT}/file", params=params, allow_redirects=False)


def _write_with_record(folder: Path, name: str, data: bytes, **owner: Any) -> Path:
    """A file and its record, as a DAG author's code could write them (the record names ``owner``)."""
    from airflow_provider_aireiter.hooks.aireiter import output_record, record_name

    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    record = output_record(owner["dag_id"], owner["run_id"], owner["task_id"], -1, 0, len(data))
    (folder / record_name(name)).write_text(json.dumps(record))
    return folder / name


def test_an_edited_result_reaches_no_byte_the_task_did_not_store(
    deployment: AirflowDeployment, attack_run: str, run_id: str, media: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    original = deployment.xcom("media_view", attack_run, "still")
    out_id = original["out_task_id"]
    name = f"{out_id}_0.png"
    stored = Path(original["outputs"][0]["path"].removeprefix("file://"))
    png = stored.read_bytes()
    this_ti = {"dag_id": "media_view", "run_id": attack_run, "task_id": "still"}
    outside = tmp_path_factory.mktemp("outside-the-media-roots")
    secret = outside / "secret.png"
    secret.write_bytes(png + b"a file of the API server's machine")
    other_run = deployment.xcom("media_view", run_id, "still")

    evil = media / "evil"
    _write_with_record(evil, name, png, **this_ti)  # a file and its record, then the file made a symlink
    (evil / name).unlink()
    (evil / name).symlink_to("/etc/hostname")
    (media / "leads-out").symlink_to(_write_with_record(outside / "d", name, png, **this_ti).parent)
    another_dag = _write_with_record(
        media / "another-dag", name, png, dag_id="private_dag", run_id=attack_run, task_id="still"
    )
    html_file = _write_with_record(media / "html", f"{out_id}_0.html", b"<script>alert(1)</script>", **this_ti)
    svg_as_png = _write_with_record(media / "svg", name, b"<svg onload='alert(1)'/>", **this_ti)

    attacks = {
        # a perfect copy with a record naming this very task instance, but outside every media root
        "outside the media roots": (out_id, f"file://{_write_with_record(outside, name, png, **this_ti)}"),
        "a file of the API server by its path": ("hostname", "file:///etc/hostname"),
        "traversal": (out_id, f"file://{media}/../{outside.name}/{name}"),
        "a symlink to /etc/hostname in the media folder": (out_id, f"file://{evil / name}"),
        "a symlinked folder leading out of the media roots": (out_id, f"file://{media / 'leads-out' / name}"),
        "another run's file": (other_run["out_task_id"], other_run["outputs"][0]["path"]),
        "a file recorded for a DAG the user may not read": (out_id, f"file://{another_dag}"),
        "an HTML file": (out_id, f"file://{html_file}"),
        "SVG named as a PNG": (out_id, f"file://{svg_as_png}"),
    }
    for label, (claimed_id, path) in attacks.items():
        forged_output = {**original["outputs"][0], "path": path, "content_type": "text/html"}
        _edit_result(
            deployment, attack_run, "still", {**original, "out_task_id": claimed_id, "outputs": [forged_output]}
        )
        answer = _file(deployment, attack_run, "still")
        assert answer.status_code == 404, (label, answer.status_code, answer.content[:80])
        assert png not in answer.content and b"script" not in answer.content, label
        assert "not served" in _ti_page(deployment, attack_run, "still"), label

    # The task's own file, with the type edited to HTML: served as what it is, a PNG, that cannot script.
    own = {**original["outputs"][0], "content_type": "text/html"}
    _edit_result(deployment, attack_run, "still", {**original, "outputs": [own]})
    answer = _file(deployment, attack_run, "still")
    assert answer.status_code == 200 and answer.content == png
    assert answer.headers["content-type"] == "image/png" and answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]


def test_a_foreign_url_is_a_link_in_the_page_never_a_redirect(
    deployment: AirflowDeployment, attack_run: str, emulator: Emulator
) -> None:
    original = deployment.xcom("media_view", attack_run, "not_stored")
    service = emulator.base_url.split("://", 1)[1]
    for url in (
        "https://attacker.invalid/x.png",
        f"http://{service}@attacker.invalid/",
        "javascript:alert(1)",
        "http://[",  # not even a URL
    ):
        output = {**original["outputs"][0], "url": url, "path": None}
        _edit_result(deployment, attack_run, "not_stored", {**original, "outputs": [output]})
        answer = _file(deployment, attack_run, "not_stored")
        assert answer.status_code == 404 and "location" not in answer.headers, url
        html = _ti_page(deployment, attack_run, "not_stored")
        assert _srcs(html) == [], url  # nothing is embedded from it
        links = re.findall(r"<a class='service-link' href='([^']*)'[^>]*rel='noopener noreferrer'", html)
        assert [unescape(link) for link in links] == ([] if url in ("javascript:alert(1)", "http://[") else [url]), url


def test_an_edited_credits_value_shows_unknown_and_never_breaks_the_page_or_the_sum(
    deployment: AirflowDeployment, attack_run: str
) -> None:
    original = deployment.xcom("media_view", attack_run, "still")
    hostile: list[Any] = ["<script>alert(1)</script>", -5, True, {"credits": 10}, [10], 10**400, 1e13, "10"]
    for value in hostile:
        _edit_result(deployment, attack_run, "still", {**original, "credits_used": value, "estimated_credits": value})
        html = _ti_page(deployment, attack_run, "still")
        assert "<dd class='estimated-credits'>unknown</dd>" in html and "<dd class='credits-used'>unknown</dd>" in html
        assert "<script>" not in html and html.endswith("</body></html>"), value
        gallery = _get(deployment, f"{MOUNT}/run", dag_id="media_view", run_id=attack_run)
        assert gallery.status_code == 200, value
        # 140 less this task's 10: its value is left out of the sum and counted as unknown
        assert "Credits used: <strong class='credits-used'>130</strong>" in gallery.text, value
        assert "(credits used unknown for 2; estimate unknown for 2 of 6 task instance(s))" in gallery.text, value
        chart = _get(deployment, f"{MOUNT}/dag", dag_id="media_view")
        assert chart.status_code == 200 and (attack_run, "130.0", "false") in _chart(chart.text), value
    # JSON has no infinity: a 1e309 in an edited value is refused by Airflow's REST API or stored as
    # something the view does not believe.
    answer = deployment.request(
        "PATCH",
        f"/api/v2/dags/media_view/dagRuns/{attack_run}/taskInstances/still/xcomEntries/return_value",
        data=json.dumps({"value": {**original, "credits_used": 1e309}, "map_index": -1}).replace("Infinity", "1e309"),
        headers={"Content-Type": "application/json"},
    )
    if answer.status_code == 200:
        assert "<dd class='credits-used'>unknown</dd>" in _ti_page(deployment, attack_run, "still")
    else:
        assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    _edit_result(deployment, attack_run, "still", original)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels; its pixel data is a few bytes (never decoded here)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_odd_input_is_a_4xx_never_a_500(
    deployment: AirflowDeployment, attack_run: str, run_id: str, media: Path
) -> None:
    base = {"dag_id": "media_view", "run_id": run_id, "task_id": "still"}
    cases = [
        ("file", {**base, "map_index": str(2**63), "n": "0"}, 422),
        ("file", {**base, "map_index": "1" * 30, "n": "0"}, 422),
        ("file", {**base, "map_index": "-1", "n": str(2**63)}, 422),
        ("file", {**base, "map_index": "-1", "n": "0", "width": "5000"}, 422),
        ("file", {**base, "task_id": "clip", "map_index": "-1", "n": "0", "width": "160"}, 422),
        ("ti", {**base, "map_index": str(2**63)}, 422),
        ("ti", {**base, "map_index": "1" * 30}, 422),
        ("ti", {**base, "map_index": "-7"}, 422),
        ("ti", {**base, "map_index": "²"}, 422),  # a digit to str.isdigit, not to int()
        ("ti", {**base, "run_id": "no-such-run", "map_index": "-1"}, 404),
        ("ti", {**base, "task_id": "no_such_task", "map_index": "-1"}, 404),
        ("run", {"dag_id": "media_view", "run_id": "no-such-run"}, 404),
        ("dag", {"dag_id": "no_such_dag"}, 404),
    ]
    for route, params, status in cases:
        answer = deployment.request("GET", f"{MOUNT}/{route}", params=params)
        assert answer.status_code == status, (route, params, answer.status_code, answer.text[:200])

    src = _srcs(_ti_page(deployment, run_id, "clip"))[0]
    whole = deployment.request("GET", src)
    invalid = deployment.request("GET", src, headers={"Range": "bytes=10-5"})  # RFC 9110: ignored
    assert invalid.status_code == 200 and invalid.content == whole.content
    beyond = deployment.request("GET", src, headers={"Range": f"bytes={len(whole.content) + 10}-"})
    assert beyond.status_code == 416

    head = deployment.request("HEAD", src)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    assert head.headers["content-type"] == whole.headers["content-type"] == "video/mp4"
    page_head = deployment.request("HEAD", f"{MOUNT}/ti", params={**base, "map_index": "-1"})
    assert page_head.status_code == 200 and page_head.content == b"" and int(page_head.headers["content-length"]) > 0

    # A 12000 x 12000 image, written where the media view may serve it: no thumbnail, refused from its header.
    still = deployment.xcom("media_view", attack_run, "still")
    huge = _write_with_record(
        media / "huge",
        f"{still['out_task_id']}_0.png",
        _png_header(12000, 12000),
        dag_id="media_view",
        run_id=attack_run,
        task_id="still",
    )
    _edit_result(
        deployment, attack_run, "still", {**still, "outputs": [{**still["outputs"][0], "path": f"file://{huge}"}]}
    )
    assert _file(deployment, attack_run, "still").status_code == 200  # the file itself is a PNG
    thumb = _file(deployment, attack_run, "still", width="160")
    assert thumb.status_code == 422 and "over the limit" in thumb.text


# ---------------------------------------------------------------------- the review example (human in the loop)

REVIEW_DAG = "example_review_before_publish"


def _wait_for_ti_state(dep: AirflowDeployment, run_id: str, task_id: str, state: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        ti = next((t for t in dep.task_instances(REVIEW_DAG, run_id) if t["task_id"] == task_id), None)
        if ti is not None and ti["state"] in ("failed", "upstream_failed"):
            raise AssertionError(dep.diagnostics(REVIEW_DAG, run_id))
        return ti if ti is not None and ti["state"] == state else None

    return wait_for(f"{task_id} to be {state}", probe, timeout=240, interval=1.0)


def _answer(dep: AirflowDeployment, run_id: str, task_id: str, option: str, note: str | None = None) -> None:
    """The reviewer's answer, given through Airflow's REST API (what the UI's dialog sends).

    A person answers seconds after the dialog appears at the earliest; a test could answer before the
    scheduler has processed the executor's "success" of the try that paused, and Airflow 3.3 then fails
    the resumed task (apache/airflow#66374, see resume_gate.py). So the answer waits for that event in
    the scheduler's log: a condition, not a delay.
    """
    key = f"task_id='{task_id}', run_id='{run_id}', try_number=1"
    wait_for(
        f"the scheduler to process the pause of {task_id}",
        lambda: any(
            "Received executor event with state success" in line and key in line
            for line in dep.process_log("scheduler").splitlines()
        ),
        timeout=120,
        interval=0.5,
    )
    dep.api(
        "PATCH",
        f"/api/v2/dags/{REVIEW_DAG}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
        json={"chosen_options": [option], "params_input": {"note": note}},
    )


def test_review_regenerate_with_note_then_approve_publishes(
    deployment: AirflowDeployment, emulator: Emulator, media: Path, browser: Any
) -> None:
    run_id = deployment.trigger(REVIEW_DAG, conf={"prompt": "A poster of a red kite"})
    _wait_for_ti_state(deployment, run_id, "review_1", "awaiting_input")
    detail = deployment.api("GET", f"/api/v2/dags/{REVIEW_DAG}/dagRuns/{run_id}/taskInstances/review_1/-1/hitlDetails")
    assert detail["options"] == ["Approve", "Regenerate"] and "A poster of a red kite" in detail["body"]
    (image,) = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", detail["body"])
    thumb = deployment.request("GET", f"/{image}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    # The reviewer's dialog, with the candidate image, in the real UI.
    _login(browser, deployment)
    browser.get(f"{deployment.api_url}/dags/{REVIEW_DAG}/runs/{run_id}/tasks/review_1/required_actions")
    _wait_for_script(
        browser,
        "the candidate image in the review dialog",
        "return [...document.querySelectorAll('img')].some(i => i.src.includes('aireiter-media/file') && i.naturalWidth > 0)",
    )
    screenshot(browser, "review-dialog")

    _answer(deployment, run_id, "review_1", "Regenerate", "make the kite blue")
    _wait_for_ti_state(deployment, run_id, "review_2", "awaiting_input")
    assert deployment.xcom(REVIEW_DAG, run_id, "prompt_2") == "A poster of a red kite. make the kite blue"
    second = deployment.xcom(REVIEW_DAG, run_id, "generate_2")
    sent = [r["body"] for r in emulator.requests() if second["out_task_id"] in json.dumps(r.get("body"))]
    assert any("A poster of a red kite. make the kite blue" in json.dumps(body) for body in sent), sent
    _answer(deployment, run_id, "review_2", "Approve")
    assert deployment.wait_for_run(REVIEW_DAG, run_id, timeout=240) == "success"
    published = deployment.xcom(REVIEW_DAG, run_id, "publish")
    assert published["round"] == 2 and str(media / "review" / "published") in published["published"]
    stored = Path(second["outputs"][0]["path"].removeprefix("file://"))
    assert Path(published["published"].removeprefix("file://")).read_bytes() == stored.read_bytes()
    states = deployment.states(REVIEW_DAG, run_id)
    assert states["generate_3"] == "skipped" and states["publish"] == "success"


def test_review_rounds_are_bounded_and_reject_publishes_nothing(deployment: AirflowDeployment) -> None:
    run_id = deployment.trigger(REVIEW_DAG)
    for round_no in (1, 2):
        _wait_for_ti_state(deployment, run_id, f"review_{round_no}", "awaiting_input")
        _answer(deployment, run_id, f"review_{round_no}", "Regenerate", f"try {round_no}")
    _wait_for_ti_state(deployment, run_id, "review_3", "awaiting_input")
    detail = deployment.api("GET", f"/api/v2/dags/{REVIEW_DAG}/dagRuns/{run_id}/taskInstances/review_3/-1/hitlDetails")
    assert detail["options"] == ["Approve", "Reject"]  # the last round offers no further regeneration
    assert deployment.xcom(REVIEW_DAG, run_id, "prompt_3").endswith(". try 1. try 2")
    _answer(deployment, run_id, "review_3", "Reject")
    assert deployment.wait_for_run(REVIEW_DAG, run_id, timeout=240) == "success"
    states = deployment.states(REVIEW_DAG, run_id)
    assert states["publish"] == "skipped"
