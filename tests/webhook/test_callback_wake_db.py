"""Waking deferred tasks in a real Airflow metadata database, directly and through Airflow's own API app.

Everything touching the database runs in ONE subprocess (``db_scenario.py``) with a private
``AIRFLOW_HOME`` and SQLite file: Airflow reads its configuration once per process, and the rest of
the suite shares this process with the default configuration (``~/airflow``), which must not be used.
The subprocess reports what it saw as JSON; the tests below check it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.conftest import StatsdListener
from tests.webhook.helpers import CONN_ID, SECRET, callback_conn_json

SCENARIO = Path(__file__).with_name("db_scenario.py")
BULK = 2000


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow_home")
    # The provider is installed (editable) in the venv; the repository root is deliberately not put on
    # PYTHONPATH, where a stray *.egg-info would make Airflow see the plugin twice.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            f"AIRFLOW_CONN_{CONN_ID.upper()}": callback_conn_json(
                callback_secret=SECRET, callback_base_url="http://127.0.0.1:9"
            ),
        }
    )
    statsd = StatsdListener()  # the API server's metrics, as Airflow's Stats sends them
    env.update(statsd.env())
    result_file = home / "result.json"
    try:
        done = subprocess.run(
            [sys.executable, str(SCENARIO), str(result_file), str(BULK)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=240,
        )
        time.sleep(0.3)  # the last datagrams
    finally:
        statsd.stop()
    if done.returncode != 0 or not result_file.exists():
        pytest.fail(f"db_scenario.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    log = done.stdout + done.stderr
    results: dict[str, Any] = json.loads(result_file.read_text())
    results["log"] = log
    results["metrics"] = statsd.ours()
    return results


def event_of(state: dict[str, Any]) -> Any:
    return (state.get("next_kwargs") or {}).get("event")


def test_wake_resumes_only_the_matching_deferred_task(scenario: dict[str, Any]) -> None:
    assert {name: s["state"] for name, s in scenario["before"].items() if name != "bulk"} == {
        "plain_job1": "deferred",
        "encrypted_job2": "deferred",
        "other_job3": "deferred",
        "other_class_job1": "deferred",
        "running_job1": "running",
        "unreadable_job1": "deferred",
        "other_conn_job1": "deferred",
        "unsettled_job4": "deferred",
        "http_job": "deferred",
        "late_job": "running",
    }
    woken, _, _, held = scenario["wake_job1"]
    assert woken == 1 and held is None
    after = scenario["after_job1"]
    assert after["plain_job1"]["state"] == "scheduled"
    assert after["plain_job1"]["trigger_id"] is None
    assert callback_for(event_of(after["plain_job1"])) == "job-1"
    assert after["plain_job1"]["next_kwargs"]["out_task_id"] == "kept"  # existing next_kwargs survive
    # another out_task_id, another trigger class with the same out_task_id, a task no longer deferred
    assert after["other_job3"]["state"] == "deferred"
    assert after["encrypted_job2"]["state"] == "deferred"
    assert after["other_class_job1"]["state"] == "deferred"
    assert after["running_job1"]["state"] == "running"
    assert event_of(after["other_class_job1"]) is None
    # the same out_task_id waited on through another connection: a token of one connection never wakes it
    assert after["other_conn_job1"]["state"] == "deferred"
    # kwargs encrypted with a Fernet key this deployment lacks: skipped with one warning, no failure
    assert after["unreadable_job1"]["state"] == "deferred"
    assert "Skipped 1 AIReiter trigger(s) whose kwargs cannot be read" in scenario["log"]


def test_second_wake_wakes_nothing(scenario: dict[str, Any]) -> None:
    assert scenario["wake_job1_again"][0] == 0
    assert scenario["wake_unknown"][0] == 0


def callback_for(event: Any) -> str | None:
    """The task a wake event names, if it is a callback event carrying the trigger's wait."""
    assert event["status"] == "callback" and set(event) == {"status", "wait"}
    assert event["wait"]["deadline"] > 0 and event["wait"]["resume_not_before"] > 0  # the whole wait, as stored
    return event["wait"]["out_task_id"]


def test_wake_holds_a_deferral_that_has_not_settled(scenario: dict[str, Any]) -> None:
    woken, _, _, held = scenario["wake_unsettled"]
    assert woken == 0
    assert held is not None and held > scenario["started_at"] + 3000  # its resume_not_before, an hour ahead
    assert scenario["after_unsettled"]["unsettled_job4"]["state"] == "deferred"


def test_callback_before_the_deferral_wakes_the_task_once_it_defers(scenario: dict[str, Any]) -> None:
    http = scenario["http"]
    assert http["early"] == [202, {"accepted": True, "woken": 0, "pending": True}]
    assert http["late_job_before_deferral"] == "running"
    assert http["late_job_after_deferral"] == "scheduled"
    assert callback_for(event_of(http["late_job_event"])) == "job-late"


def test_wake_reads_encrypted_trigger_kwargs(scenario: dict[str, Any]) -> None:
    assert scenario["wake_job2"][0] == 1
    after = scenario["after_job2"]
    assert after["encrypted_job2"]["state"] == "scheduled"
    assert callback_for(event_of(after["encrypted_job2"])) == "job-2"
    assert after["other_job3"]["state"] == "deferred"


def test_wake_cost_with_thousands_of_deferred_triggers(scenario: dict[str, Any]) -> None:
    cold_woken, cold_statements, cold_seconds, _ = scenario["bulk_cold"]
    warm_woken, warm_statements, warm_seconds, _ = scenario["bulk_warm"]
    assert cold_woken == 1 and warm_woken == 1
    # One statement lists the waiting triggers, whatever their number; waking one task takes a few more
    # (Airflow's submit_event); a first call also reads the kwargs, 500 triggers per statement.
    assert warm_statements <= 10
    assert cold_statements - warm_statements <= BULK // 500 + 1
    print(f"\nwake with {BULK} deferred triggers: cold {cold_seconds:.3f} s, warm {warm_seconds:.3f} s")


def test_callback_through_airflows_own_api_app(scenario: dict[str, Any]) -> None:
    http = scenario["http"]
    # Airflow's own routes need a token; the plugin's route is reachable without one.
    assert http["core_api_without_token"] == 401
    assert http["forged"][0] == 403 and http["state_after_forged"] == "deferred"
    assert http["replayed_other_id"][0] == 403 and http["job3_after_replay"] == "deferred"
    assert http["unknown_conn"][0] == 403
    assert http["missing_token"][0] == 401
    assert http["get"] == 405
    assert http["unknown_task"] == [202, {"accepted": True, "woken": 0, "pending": True}]
    assert http["valid"] == [202, {"accepted": True, "woken": 1}]
    assert http["state_after_valid"]["state"] == "scheduled"
    assert callback_for(event_of(http["state_after_valid"])) == "job-http"
    assert http["duplicate"] == [202, {"accepted": True, "woken": 0}]
    # another connection's token: verified against this connection's path and secret, it does not match
    assert http["other_conn_token_under_cb"][0] == 403


def test_plugin_loaded_once_without_import_errors(scenario: dict[str, Any]) -> None:
    assert scenario["plugins"]["names"].count("aireiter_webhook") == 1
    assert scenario["plugins"]["import_errors"] == {}


def test_secret_and_tokens_stay_out_of_the_server_logs(scenario: dict[str, Any]) -> None:
    from airflow_provider_aireiter.hooks.aireiter import callback_token

    log = scenario["log"]
    assert "AIReiter callback conn=aireiter_cb" in log  # the receiver did log
    assert SECRET not in log
    for out_task_id in ("job-http", "nobody-waits", "job-late"):
        assert callback_token(SECRET, CONN_ID, out_task_id) not in log


def test_each_woken_task_instance_is_counted_once_as_a_callback_wake(scenario: dict[str, Any]) -> None:
    """``aireiter.callback_wake`` counts task instances resumed, by a callback's request or a kept callback's retry."""
    direct = ["wake_job1", "wake_job1_again", "wake_unknown", "wake_job2", "wake_unsettled", "bulk_cold", "bulk_warm"]
    woken_directly = sum(scenario[name][0] for name in direct)
    http = scenario["http"]
    assert http["valid"][1]["woken"] == 1  # through Airflow's API app
    assert http["early"][1].get("pending") and http["late_job_after_deferral"] == "scheduled"  # a kept callback's retry
    wakes = [(value, kind) for name, value, kind in scenario["metrics"] if name == "aireiter.callback_wake"]
    assert wakes and all(kind == "c" for _, kind in wakes)
    assert sum(value for value, _ in wakes) == woken_directly + 1 + 1
    assert {name for name, _, _ in scenario["metrics"]} == {"aireiter.callback_wake"}
