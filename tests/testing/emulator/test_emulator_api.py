"""The emulator's HTTP API and the real service's quirks, over real HTTP."""

from __future__ import annotations

import http.client
import json
import re
from datetime import datetime
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import Emulator

SUBMIT = "/api/openapi/submit"
QUERY = "/api/openapi/query"
BALANCE = "/api/openapi/balance"


def test_submit_answers_order_id_pending_and_estimate(api):
    response = api.submit("job-1", params={"prompt": "a red fox in snow", "aspect_ratio": "16:9"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["ok"] is True and body["statusCode"] == 200 and body["message"] == ""
    data = body["data"]
    assert re.fullmatch(r"order_[A-Za-z0-9]{24}", data["task_id"])
    assert data["out_task_id"] == "job-1"
    assert data["status"] == "pending"
    assert data["estimated_credits"] == 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["created_at"])
    datetime.strptime(data["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_video_model_estimate_is_higher(api):
    data = api.submit("vid", model="seedance_1_5_pro", params={"prompt": "x", "video_length": 5}).json()["data"]
    assert data["estimated_credits"] == 100


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic ZW11bGF0b3Ita2V5", "Bearer"])
@pytest.mark.parametrize(("method", "path"), [("POST", SUBMIT), ("POST", QUERY), ("GET", BALANCE)])
def test_missing_or_wrong_key_is_http_401_with_body_401(aireiter_emulator, header, method, path):
    headers = {"Authorization": header} if header else {}
    response = requests.request(
        method, aireiter_emulator.base_url + path, json={"out_task_id": "x"}, headers=headers, timeout=5
    )
    assert response.status_code == 401
    assert response.json() == {"ok": True, "statusCode": 401, "message": "unauthorized: invalid api key"}
    assert aireiter_emulator.submit_count("x") == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("POST", BALANCE),
        ("GET", SUBMIT),
        ("GET", QUERY),
        ("POST", "/api/openapi/cancel"),
        ("PUT", SUBMIT),
    ],
)
def test_unknown_routes_and_wrong_methods_get_the_html_page(api, method, path):
    response = api.session.request(method, api.base + path, json={}, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        response.json()


def test_unknown_route_also_without_auth_is_html(aireiter_emulator):
    response = requests.get(aireiter_emulator.base_url + "/pricing", timeout=5)
    assert response.status_code == 200 and "AIReiter" in response.text


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"", "JSON object"),
        (b'{"params": {}, "out_task_id": "a"}', "'model'"),
        (b'{"model": "seedream_v5_lite", "out_task_id": "a"}', "'params'"),
        (b'{"model": "seedream_v5_lite", "params": [], "out_task_id": "a"}', "'params'"),
        (b'{"model": "seedream_v5_lite", "params": {"prompt": "p"}}', "'out_task_id'"),
        (b'{"model": "", "params": {"prompt": "p"}, "out_task_id": "a"}', "'model'"),
    ],
)
def test_malformed_submit_bodies_are_business_400(api, raw, needle):
    response = api.session.post(api.base + SUBMIT, data=raw, headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["statusCode"] == 400 and body["data"] is None
    assert needle in body["message"]


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "ünïcode", "a/b", "", 123])
def test_out_task_id_rule(api, bad):
    body = api.submit(bad).json()
    assert body["statusCode"] == 400
    assert "out_task_id" in body["message"] and "[A-Za-z0-9_-]{1,64}" in body["message"]


@pytest.mark.parametrize("good", ["a", "A-b_9", "x" * 64])
def test_out_task_id_accepted(api, good):
    assert api.submit(good).json()["statusCode"] == 200


def test_query_unknown_id_is_business_400(api):
    response = api.query("never-submitted")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "statusCode": 400, "message": "api task not found", "data": None}
    assert api.query(task_id="order_doesnotexist").json()["message"] == "api task not found"


def test_query_without_id_is_business_400(api):
    body = api.session.post(api.base + QUERY, json={}, timeout=5).json()
    assert body["statusCode"] == 400 and "task_id" in body["message"]


def test_query_by_task_id_and_by_out_task_id(api):
    task_id = api.submit("q1", metadata={"dag_id": "d", "run": 3}).json()["data"]["task_id"]
    by_out = api.query("q1").json()["data"]
    by_task = api.query(task_id=task_id).json()["data"]
    for data in (by_out, by_task):
        assert data["task_id"] == task_id
        assert data["out_task_id"] == "q1"
        assert data["input"] == {"model": "seedream_v5_lite", "params": {"prompt": "a fox"}}
        assert data["metadata"] == {"dag_id": "d", "run": 3}
        assert data["status"] in ("pending", "processing", "completed")


def test_metadata_absent_when_not_sent(api):
    api.submit("nometa")
    assert "metadata" not in api.query("nometa").json()["data"]


@pytest.mark.aireiter_emulator(hide_task_id=True)
def test_hide_task_id_blanks_the_submit_answer_only(api):
    data = api.submit("hidden").json()["data"]
    assert data["task_id"] == ""
    assert data["out_task_id"] == "hidden"
    assert api.query("hidden").json()["data"]["task_id"].startswith("order_")


def test_gpt_image_2_official_alternative_envelope(api):
    body = api.submit("gpt1", model="gpt_image_2_official", params={"prompt": "p", "quality": "high"}).json()
    assert set(body) == {"code", "data"}
    assert body["code"] == 200
    assert isinstance(body["data"], list) and len(body["data"]) == 1
    assert body["data"][0]["status"] == "submitted"
    assert re.fullmatch(r"task_01[0-9A-Z]{24}", body["data"][0]["task_id"])
    queried = api.query("gpt1").json()
    assert queried["ok"] is True and queried["data"]["status"] == "submitted"
    assert queried["data"]["task_id"] == body["data"][0]["task_id"]


@pytest.mark.aireiter_emulator(credits=15)
def test_balance_credits_and_433(api, aireiter_emulator):
    assert api.balance().json() == {"ok": True, "statusCode": 200, "message": "", "data": {"credits": 15}}
    assert api.submit("c1").json()["statusCode"] == 200
    # the balance is charged at completion, not at submit
    assert api.balance().json()["data"]["credits"] == 15
    aireiter_emulator.complete_task("c1")
    assert api.query("c1").json()["data"]["credits_used"] == 10
    assert api.balance().json()["data"]["credits"] == 5
    refused = api.submit("c2")
    assert refused.status_code == 200
    assert refused.json() == {"ok": True, "statusCode": 433, "message": "not enough credits", "data": None}
    assert aireiter_emulator.submit_count("c2") == 0
    assert api.query("c2").json()["message"] == "api task not found"
    assert aireiter_emulator.balance == 5


def test_failed_tasks_cost_nothing(api, aireiter_emulator):
    api.submit("f1")
    aireiter_emulator.complete_task("f1", status="failed", error="content rejected")
    data = api.query("f1").json()["data"]
    assert data["status"] == "failed"
    assert data["error"] == "content rejected"
    assert data["credits_used"] == 0
    assert "output" not in data
    assert aireiter_emulator.balance == 10_000


def test_ok_true_in_every_json_envelope(api, aireiter_emulator):
    answers = [
        api.submit("e1"),
        api.submit("e1"),
        api.submit("bad id"),
        api.query("e1"),
        api.query("nope"),
        api.balance(),
        requests.get(aireiter_emulator.base_url + BALANCE, timeout=5),
    ]
    for answer in answers:
        assert answer.json()["ok"] is True


def test_request_log_has_bodies_but_never_the_key(aireiter_emulator, api):
    api.submit("log1", callback_url="http://127.0.0.1:9/hook?token=sekret")
    api.query("log1")
    requests.post(aireiter_emulator.base_url + SUBMIT, json={"leak": aireiter_emulator.api_key}, timeout=5)
    log = aireiter_emulator.requests()
    assert [entry["path"] for entry in log] == [SUBMIT, QUERY, SUBMIT]
    assert log[0]["method"] == "POST" and log[0]["body"]["out_task_id"] == "log1"
    assert set(log[0]) == {"method", "path", "body", "time"}
    assert "sekret" not in repr(log)
    assert log[0]["body"]["callback_url"].startswith("http://127.0.0.1:9/hook")
    assert aireiter_emulator.api_key not in repr(log)
    admin = requests.get(aireiter_emulator.base_url + "/_emulator/requests", timeout=5)
    assert admin.json() == log
    assert aireiter_emulator.api_key not in admin.text


def test_query_count(api, aireiter_emulator):
    task_id = api.submit("qc").json()["data"]["task_id"]
    for _ in range(3):
        api.query("qc")
    api.query(task_id=task_id)
    api.query("other")
    assert aireiter_emulator.query_count("qc") == 4
    assert aireiter_emulator.query_count("other") == 1
    assert aireiter_emulator.query_count() == 5


def test_keep_alive_reuses_one_connection(api):
    api.submit("ka")
    for _ in range(5):
        api.query("ka")
    # one pooled connection served all requests
    pool = api.session.get_adapter(api.base).poolmanager
    assert sum(p.num_connections for p in pool.pools._container.values()) == 1


def test_constructor_validation():
    with pytest.raises(ValueError):
        Emulator(speed=0)
    with pytest.raises(ValueError):
        Emulator(duplicate_policy="ignore")
    with pytest.raises(ValueError):
        Emulator(api_key="")


def test_chunked_request_body_and_bad_content_length(aireiter_emulator):
    parts = urlsplit(aireiter_emulator.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    headers = {"Authorization": f"Bearer {aireiter_emulator.api_key}", "Content-Type": "application/json"}
    chunks = iter([b'{"model": "m", "params": {}, ', b'"out_task_id": "chunked"}'])
    conn.request("POST", SUBMIT, body=chunks, headers=headers, encode_chunked=True)
    assert json.loads(conn.getresponse().read())["statusCode"] == 200
    assert aireiter_emulator.submit_count("chunked") == 1
    conn.putrequest("POST", QUERY)
    conn.putheader("Content-Length", "nope")
    conn.endheaders()
    assert conn.getresponse().status == 400
    conn.close()
