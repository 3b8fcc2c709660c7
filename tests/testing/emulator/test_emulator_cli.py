"""The command line: start as a subprocess, use it, stop it with SIGTERM / Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_aireiter.testing.emulator", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Ctrl-C" in line:
            return process, lines
    process.kill()
    raise AssertionError(f"emulator did not start: {lines}")


def _base_url(lines: list[str]) -> str:
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", "\n".join(lines))
    assert match, lines
    return match.group(1)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_starts_serves_and_stops(stop_signal):
    process, lines = _start("--api-key", "cli-key", "--credits", "42", "--speed", "60")
    try:
        base = _base_url(lines)
        text = "\n".join(lines)
        assert "API key: cli-key" in text
        conn_json = json.dumps({"conn_type": "aireiter", "host": base, "password": "cli-key"})
        assert f"AIRFLOW_CONN_AIREITER_DEFAULT='{conn_json}'" in text
        assert f"AIRFLOW_CONN_AIREITER_DEFAULT=aireiter://:cli-key@{quote(base, safe='')}" in text
        answer = requests.get(base + "/api/openapi/balance", headers={"Authorization": "Bearer cli-key"}, timeout=5)
        assert answer.json()["data"] == {"credits": 42}
        assert requests.get(base + "/api/openapi/balance", timeout=5).status_code == 401
        health = requests.get(base + "/_emulator/health", timeout=5).json()
        assert health["speed"] == 60
        # an idle keep-alive client must not keep the process alive
        session = requests.Session()
        session.get(base + "/", timeout=5)
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert "stopped" in process.stdout.read()
        with pytest.raises(requests.ConnectionError):
            requests.get(base + "/", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_options_duplicate_policy_and_faults():
    faults = json.dumps({"balance": ["http_503"]})
    process, lines = _start("--duplicate-policy", "create_new", "--faults", faults, "--hide-task-id")
    try:
        base = _base_url(lines)
        headers = {"Authorization": "Bearer emulator-key"}
        assert requests.get(base + "/api/openapi/balance", headers=headers, timeout=5).status_code == 503
        body = {"model": "seedream_v5_lite", "params": {"prompt": "p"}, "out_task_id": "same"}
        first = requests.post(base + "/api/openapi/submit", json=body, headers=headers, timeout=5).json()
        second = requests.post(base + "/api/openapi/submit", json=body, headers=headers, timeout=5).json()
        assert first["data"]["task_id"] == "" and second["statusCode"] == 200
        assert requests.get(base + "/_emulator/submits", timeout=5).json() == {"same": 2}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
