"""Admin endpoints under /_emulator/ and the pytest fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import CONN_ENV_VAR, Emulator


def test_health_needs_no_key_and_never_shows_it(aireiter_emulator):
    response = requests.get(aireiter_emulator.base_url + "/_emulator/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["speed"] == 100
    assert aireiter_emulator.api_key not in response.text


def test_admin_requests_are_not_logged(aireiter_emulator, api):
    api.balance()
    for path in ("health", "requests", "submits", "callbacks", "faults"):
        assert requests.get(f"{aireiter_emulator.base_url}/_emulator/{path}", timeout=5).status_code == 200
    assert [entry["path"] for entry in aireiter_emulator.requests()] == ["/api/openapi/balance"]


def test_submits_endpoint(aireiter_emulator, api):
    api.submit("a")
    api.submit("b")
    api.submit("b")
    assert requests.get(aireiter_emulator.base_url + "/_emulator/submits", timeout=5).json() == {"a": 1, "b": 1}


@pytest.mark.aireiter_emulator(speed=1)
def test_complete_endpoint(aireiter_emulator, api):
    base = aireiter_emulator.base_url + "/_emulator/tasks"
    api.submit("t-ok")
    api.submit("t-fail")
    done = requests.post(f"{base}/t-ok/complete", timeout=5)
    assert done.status_code == 200 and done.json()["task"]["status"] == "completed"
    failed = requests.post(f"{base}/t-fail/complete", json={"status": "failed", "error": "boom"}, timeout=5)
    assert failed.json()["task"] == api.query("t-fail").json()["data"]
    assert api.query("t-fail").json()["data"]["error"] == "boom"
    assert requests.post(f"{base}/t-ok/complete", timeout=5).status_code == 409
    assert requests.post(f"{base}/missing/complete", timeout=5).status_code == 404
    assert requests.post(f"{base}/t-ok/complete", json={"status": "weird"}, timeout=5).status_code == 400
    assert requests.get(f"{base}/t-ok", timeout=5).json()["status"] == "completed"
    assert requests.get(f"{base}/missing", timeout=5).status_code == 404


def test_reset_and_balance_endpoints(aireiter_emulator, api):
    base = aireiter_emulator.base_url + "/_emulator"
    api.submit("x")
    assert requests.post(base + "/balance", json={"credits": 5}, timeout=5).json() == {"ok": True, "credits": 5}
    assert api.balance().json()["data"]["credits"] == 5
    assert api.submit("y").json()["statusCode"] == 433
    assert requests.post(base + "/balance", json={"credits": "many"}, timeout=5).status_code == 400
    assert requests.post(base + "/reset", timeout=5).json() == {"ok": True}
    assert api.balance().json()["data"]["credits"] == 10_000
    assert api.query("x").json()["message"] == "api task not found"


def test_unknown_admin_route_is_404_json(aireiter_emulator):
    response = requests.get(aireiter_emulator.base_url + "/_emulator/nothing", timeout=5)
    assert response.status_code == 404 and "unknown admin endpoint" in response.json()["error"]


def test_connection_fixture_sets_the_env(aireiter_connection):
    assert os.environ[CONN_ENV_VAR] == aireiter_connection.conn_json
    conn = json.loads(os.environ[CONN_ENV_VAR])
    assert conn == {"conn_type": "aireiter", "host": aireiter_connection.base_url, "password": "emulator-key"}
    answer = requests.get(
        conn["host"] + "/api/openapi/balance", headers={"Authorization": f"Bearer {conn['password']}"}, timeout=5
    )
    assert answer.json()["statusCode"] == 200


@pytest.mark.aireiter_emulator(speed=7, credits=3, api_key="other")
def test_marker_configures_the_fixture(aireiter_emulator):
    assert isinstance(aireiter_emulator, Emulator) and aireiter_emulator.running
    assert aireiter_emulator.speed == 7
    assert aireiter_emulator.balance == 3
    assert aireiter_emulator.api_key == "other"


def test_import_is_light():
    code = (
        "import sys, threading\n"
        "import airflow_provider_aireiter.testing.emulator as e\n"
        "assert 'airflow' not in sys.modules, 'airflow imported'\n"
        "assert threading.active_count() == 1\n"
        "print(e.Emulator.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Emulator"
