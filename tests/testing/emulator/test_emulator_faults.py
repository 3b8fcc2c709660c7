"""Every fault kind, scripted and by rate, programmatic and through the admin API."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import Emulator, Fault


def _completed_media_url(api, emu, out_task_id="m1", **kwargs):
    api.submit(out_task_id, **kwargs)
    emu.complete_task(out_task_id)
    return api.query(out_task_id).json()["data"]["output"][0]["url"]


@pytest.mark.parametrize(("spec", "retry_after"), [("http_429", "1"), (Fault("http_429", retry_after=7), "7")])
def test_http_429_with_retry_after_is_not_processed(api, aireiter_emulator, spec, retry_after):
    aireiter_emulator.faults.script("submit", [spec])
    response = api.submit("r429")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == retry_after
    assert aireiter_emulator.submit_count("r429") == 0
    assert api.submit("r429").json()["statusCode"] == 200
    assert aireiter_emulator.submit_count("r429") == 1


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_503", 503)])
def test_http_5xx_is_not_processed(api, aireiter_emulator, kind, status):
    aireiter_emulator.faults.script("submit", [kind])
    response = api.submit("r5xx")
    assert response.status_code == status
    assert aireiter_emulator.submit_count("r5xx") == 0
    assert aireiter_emulator.submit_request_count("r5xx") == 1


def test_busy_429_is_a_business_error(api, aireiter_emulator):
    aireiter_emulator.faults.script("query", ["busy_429"])
    api.submit("busy")
    response = api.query("busy")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "statusCode": 429, "message": "busy", "data": None}
    assert api.query("busy").json()["statusCode"] == 200


def test_script_order_with_none_gaps(api, aireiter_emulator):
    api.submit("seq")
    aireiter_emulator.faults.script("query", ["http_503", None, "http_502", None])
    codes = [api.query("seq").status_code for _ in range(5)]
    assert codes == [503, 200, 502, 200, 200]
    assert aireiter_emulator.faults.remaining("query") == 0
    assert [f["kind"] for f in aireiter_emulator.faults.injected()] == ["http_503", "http_502"]


def test_slow_answers_after_the_client_gave_up_and_still_processes(api, aireiter_emulator):
    aireiter_emulator.faults.script("submit", [Fault("slow", seconds=0.8)])
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        api.session.post(
            api.base + "/api/openapi/submit",
            json={"model": "seedream_v5_lite", "params": {"prompt": "p"}, "out_task_id": "slow1"},
            timeout=0.3,
        )
    assert time.monotonic() - started < 0.7
    assert aireiter_emulator.submit_count("slow1") == 0
    deadline = time.monotonic() + 3
    while aireiter_emulator.submit_count("slow1") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert aireiter_emulator.submit_count("slow1") == 1


def test_slow_query_eventually_answers(api, aireiter_emulator):
    api.submit("slow2")
    aireiter_emulator.faults.script("query", [Fault("slow", seconds=0.3)])
    started = time.monotonic()
    assert api.query("slow2").json()["statusCode"] == 200
    assert time.monotonic() - started >= 0.3


def test_reset_after_processing_on_submit_creates_the_task(api, aireiter_emulator):
    aireiter_emulator.faults.script("submit", ["reset_after_processing"])
    with pytest.raises(requests.ConnectionError) as caught:
        api.submit("rst")
    assert "reset" in repr(caught.value).lower() or "aborted" in repr(caught.value).lower()
    assert aireiter_emulator.submit_count("rst") == 1
    data = api.query("rst").json()["data"]
    assert data["out_task_id"] == "rst" and data["task_id"].startswith("order_")


def test_reset_after_processing_raw_socket_sees_econnreset(aireiter_emulator):
    aireiter_emulator.faults.script("balance", ["reset_after_processing"])
    parts = urlsplit(aireiter_emulator.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", "/api/openapi/balance", headers={"Authorization": f"Bearer {aireiter_emulator.api_key}"})
    with pytest.raises(ConnectionResetError):
        conn.getresponse()
    conn.close()


def test_malformed_json_is_processed_but_unparseable(api, aireiter_emulator):
    aireiter_emulator.faults.script("submit", ["malformed_json"])
    response = api.submit("mal")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(ValueError):
        response.json()
    assert response.text.startswith('{"ok": true')
    assert aireiter_emulator.submit_count("mal") == 1


def test_html_on_a_real_route(api, aireiter_emulator):
    aireiter_emulator.faults.script("submit", ["html"])
    response = api.submit("html1")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert aireiter_emulator.submit_count("html1") == 0


@pytest.mark.aireiter_emulator(speed=100, durations={"*": (0.5, 1.0)})
def test_task_failure_fails_the_next_task_only(api, aireiter_emulator):
    aireiter_emulator.faults.script("submit", [Fault("task_failure", message="policy violation")])
    api.submit("tf1")
    api.submit("tf2")
    failed = api.wait_status("tf1", ("completed", "failed"))
    assert failed["status"] == "failed" and failed["error"] == "policy violation"
    assert failed["credits_used"] == 0 and "output" not in failed
    assert api.wait_status("tf2", ("completed", "failed"))["status"] == "completed"


def test_task_failure_stays_armed_through_a_rejected_submit(api, aireiter_emulator):
    aireiter_emulator.faults.script("submit", ["task_failure"])
    assert api.submit("bad id!").json()["statusCode"] == 400
    api.submit("tf3")
    assert api.wait_status("tf3", ("completed", "failed"))["status"] == "failed"


def test_truncated_download(api, aireiter_emulator):
    url = _completed_media_url(api, aireiter_emulator, params={"prompt": "p", "resolution": "3K"})
    aireiter_emulator.faults.script("media", ["truncated_download"])
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    advertised = int(response.getheader("Content-Length") or 0)
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    conn.close()
    assert 0 < len(caught.value.partial) < advertised
    assert len(caught.value.partial) == advertised // 2
    full = requests.get(url, timeout=5)
    assert len(full.content) == advertised


def test_media_faults(api, aireiter_emulator):
    url = _completed_media_url(api, aireiter_emulator)
    aireiter_emulator.faults.script("media", ["http_503", "reset_after_processing", Fault("http_429", retry_after=2)])
    assert requests.get(url, timeout=5).status_code == 503
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    limited = requests.get(url, timeout=5)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert requests.get(url, timeout=5).status_code == 200


def test_rate_faults_are_random_but_seeded(aireiter_emulator, api):
    api.submit("rate")
    aireiter_emulator.faults.rate("query", "http_500", 0.3, seed=42)
    first = [api.query("rate").status_code for _ in range(100)]
    assert 10 <= first.count(500) <= 50
    assert set(first) == {200, 500}
    aireiter_emulator.faults.rate("query", "http_500", 0.3, seed=42)
    again = [api.query("rate").status_code for _ in range(100)]
    assert again == first
    aireiter_emulator.faults.clear()
    assert {api.query("rate").status_code for _ in range(20)} == {200}


def test_rate_one_and_zero(api, aireiter_emulator):
    aireiter_emulator.faults.rate("balance", "busy_429", 1.0)
    assert all(api.balance().json()["statusCode"] == 429 for _ in range(5))
    aireiter_emulator.faults.rate("balance", "busy_429", 0.0)
    assert api.balance().json()["statusCode"] == 200


def test_script_takes_precedence_over_rate(api, aireiter_emulator):
    aireiter_emulator.faults.rate("balance", "http_500", 1.0)
    aireiter_emulator.faults.script("balance", [None, "http_502"])
    assert [api.balance().status_code for _ in range(3)] == [200, 502, 500]


def test_fault_validation():
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="option"):
        Fault("http_500", retry_after=3)
    emu = Emulator()
    with pytest.raises(ValueError, match="cannot be used"):
        emu.faults.script("submit", ["truncated_download"])
    with pytest.raises(ValueError, match="cannot be used"):
        emu.faults.script("query", ["task_failure"])
    with pytest.raises(ValueError, match="unknown endpoint"):
        emu.faults.script("upload", [None])
    with pytest.raises(ValueError):
        emu.faults.rate("query", "http_500", 1.5)
    assert Fault("slow").option("seconds") == 10.0
    assert Fault("slow", seconds=2).to_dict() == {"kind": "slow", "seconds": 2}


def test_constructor_faults_option():
    faults = {"submit": ["http_503", None], "query": {"kind": "http_500", "rate": 1.0}}
    with Emulator(speed=100, faults=faults) as emu:
        headers = {"Authorization": f"Bearer {emu.api_key}"}
        body = {"model": "m", "params": {}, "out_task_id": "cf"}
        assert (
            requests.post(emu.base_url + "/api/openapi/submit", json=body, headers=headers, timeout=5).status_code
            == 503
        )
        assert (
            requests.post(emu.base_url + "/api/openapi/submit", json=body, headers=headers, timeout=5).status_code
            == 200
        )
        assert (
            requests.post(emu.base_url + "/api/openapi/query", json=body, headers=headers, timeout=5).status_code == 500
        )


def test_admin_fault_endpoints(aireiter_emulator, api):
    admin = aireiter_emulator.base_url + "/_emulator/faults"
    answer = requests.post(
        admin,
        json={"endpoint": "submit", "script": ["http_503", None, {"kind": "http_429", "retry_after": 4}]},
        timeout=5,
    )
    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert api.submit("adm").status_code == 503
    assert api.submit("adm").status_code == 200
    limited = api.submit("adm2")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "4"
    assert (
        requests.post(
            admin, json={"endpoint": "query", "kind": "http_500", "rate": 1.0, "seed": 3}, timeout=5
        ).status_code
        == 200
    )
    assert api.query("adm").status_code == 500
    described = requests.get(admin, timeout=5).json()
    assert described["rates"]["query"][0]["kind"] == "http_500"
    assert [item["kind"] for item in described["injected"]] == ["http_503", "http_429", "http_500"]
    assert requests.delete(admin, timeout=5).json() == {"ok": True}
    assert api.query("adm").status_code == 200
    bad = requests.post(admin, json={"endpoint": "submit", "script": ["nope"]}, timeout=5)
    assert bad.status_code == 400 and "unknown fault kind" in bad.json()["error"]
    assert requests.post(admin, json={"endpoint": "query"}, timeout=5).status_code == 400
    assert requests.post(admin, data=b"[1]", timeout=5).status_code == 400
