"""The operators and the sensor behave as Airflow users expect: retries, timeouts, skips (run in ``dag.test()``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.emulator import Emulator
from tests.conftest import conn_json
from tests.operators.dagtest_helpers import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

RETRIES = "retries=2, retry_delay=timedelta(seconds=0)"


def _queries(emu: Emulator) -> int:
    return sum(1 for r in emu.requests() if r["path"].endswith("/query"))


def _submits(emu: Emulator) -> int:
    return sum(1 for r in emu.requests() if r["path"].endswith("/submit"))


def _single_shot(monkeypatch: pytest.MonkeyPatch, emu: Emulator, api_key: str | None = None) -> None:
    """One HTTP try per call, so what is counted is Airflow's tries of the task."""
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(emu.base_url, api_key or emu.api_key, max_attempts=1))


def test_a_wrong_api_key_fails_at_once_without_using_the_retries(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection, api_key="wrong-key")
    state, _ = run_dag("wrong_key", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _queries(aireiter_connection) == 1  # one try: the look-up before the submit


@pytest.mark.aireiter_emulator(speed=100, credits=5)
def test_missing_credits_fail_at_once(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection)
    state, _ = run_dag("no_credits_once", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _submits(aireiter_connection) == 1


def test_params_the_service_rejects_fail_at_once(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection)
    # Passed through as given, refused by the service (business 400 naming the field).
    body = f'SeedreamV5LiteOperator(task_id="image", prompt="x", callback_url="ftp://example.com/hook", {RETRIES})'
    state, _ = run_dag("service_rejects_params", body, tmp_path)
    assert state == "failed"
    assert _submits(aireiter_connection) == 1


def test_a_wrong_base_url_fails_at_once(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection)
    aireiter_connection.faults.rate("query", "html", 1.0)
    state, _ = run_dag("html_page", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _queries(aireiter_connection) == 1


def test_a_transient_outage_still_uses_the_retries(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The control for the tests above: the same count sees every try when the error is transient."""
    _single_shot(monkeypatch, aireiter_connection)
    aireiter_connection.faults.rate("query", "http_503", 1.0)
    state, _ = run_dag("outage", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _queries(aireiter_connection) == 3
    assert _submits(aireiter_connection) == 0  # could not ask: never submitted


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_every_success_log_is_free_of_error_lines(
    aireiter_connection: Emulator, tmp_path: Path, deferrable: bool, logs: Any
) -> None:
    out = tmp_path / "media"
    body = f"""
    SeedreamV5LiteOperator(task_id="image", prompt="x", deferrable={deferrable}, poll_interval=0.2,
                           output_path="file://{out}/")
    """
    state, _ = run_dag(f"no_error_lines_{deferrable}", body, tmp_path)
    assert state == "success"
    errors = [line for line in logs().splitlines() if "[error" in line or line.startswith("ERROR ")]
    assert errors == []
