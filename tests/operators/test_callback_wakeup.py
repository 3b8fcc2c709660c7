"""A callback wake-up is only a signal: the truth comes from the query endpoint, the body is not trusted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.exceptions import AireiterTaskFailedError
from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from airflow_provider_aireiter.operators.aireiter import Seedance15ProOperator
from airflow_provider_aireiter.sensors.aireiter import AireiterTaskSensor
from airflow_provider_aireiter.testing.emulator import Emulator
from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger
from tests.compat import TaskDeferred
from tests.operators.dagtest_helpers import run_dag

#: what a forged or early callback would claim
CLAIMS_SUCCESS = {"status": "callback", "out_task_id": "", "task": {"status": "completed", "output": [{"url": "x"}]}}


def _submit(emu: Emulator, out_task_id: str) -> None:
    AireiterHook().submit("seedance_1_5_pro", {"prompt": "x"}, out_task_id)


@pytest.mark.aireiter_emulator(speed=1)
def test_callback_for_a_running_task_defers_again_with_the_same_deadline(aireiter_connection: Emulator) -> None:
    _submit(aireiter_connection, "still-running")
    op = Seedance15ProOperator(task_id="v", prompt="x", poll_interval=40)
    deadline = time.time() + 600
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_complete({}, event={**CLAIMS_SUCCESS, "out_task_id": "still-running"}, deadline=deadline)
    trigger = deferred.value.trigger
    assert isinstance(trigger, AireiterTaskTrigger)
    assert trigger.wait.out_task_id == "still-running" and trigger.wait.deadline == deadline
    assert aireiter_connection.query_count("still-running") == 1  # it asked the service
    # ... so the trigger does not ask again before a poll interval has passed
    assert before + 40 <= trigger.wait.first_poll_at <= time.time() + 40


@pytest.mark.aireiter_emulator(speed=1)
def test_deferred_sensor_does_not_repeat_the_query_it_just_made(aireiter_connection: Emulator) -> None:
    _submit(aireiter_connection, "just-asked")
    sensor = AireiterTaskSensor(task_id="s", out_task_id="just-asked", deferrable=True, poke_interval=30, timeout=600)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, AireiterTaskTrigger)
    assert aireiter_connection.query_count("just-asked") == 1
    assert before + 30 <= trigger.wait.first_poll_at <= time.time() + 30
    assert before + 600 <= trigger.wait.deadline <= time.time() + 600


@pytest.mark.aireiter_emulator(speed=1)
def test_callback_for_a_failed_task_fails_whatever_the_body_says(aireiter_connection: Emulator) -> None:
    _submit(aireiter_connection, "really-failed")
    aireiter_connection.complete_task("really-failed", status="failed", error="rejected by review")
    sensor = AireiterTaskSensor(task_id="s", out_task_id="really-failed")
    with pytest.raises(AireiterTaskFailedError, match="rejected by review"):
        sensor.execute_complete({}, event={**CLAIMS_SUCCESS, "out_task_id": "really-failed"})


@pytest.mark.usefixtures("airflow_db")
def test_sensor_in_reschedule_mode(aireiter_connection: Emulator, tmp_path: Path, logs: Any) -> None:
    body = """
    submit = SeedreamV5LiteOperator(task_id="submit", prompt="x", wait_for_completion=False, out_task_id="resched-1")
    wait = AireiterTaskSensor(task_id="wait", out_task_id="resched-1", mode="reschedule", poke_interval=1, timeout=60)
    submit >> wait
    collect({"wait": wait.output})
    """
    state, results = run_dag("sense_reschedule", body, tmp_path)
    assert state == "success", logs()[-3000:]
    assert results["wait"]["status"] == "completed" and results["wait"]["out_task_id"] == "resched-1"


@pytest.mark.aireiter_emulator(speed=1)
def test_a_reattached_running_task_defers_without_asking_again(aireiter_connection: Emulator) -> None:
    """The reattach has just read the task: the deferral uses that answer and the trigger waits an interval."""
    from types import SimpleNamespace

    _submit(aireiter_connection, "reattach-me")
    op = Seedance15ProOperator(task_id="v", prompt="x", out_task_id="reattach-me", deferrable=True, poll_interval=40)
    ti = SimpleNamespace(
        try_number=2, dag_id="d", task_id="v", run_id="r", map_index=-1, start_date=None, xcom_push=lambda **_: None
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    assert aireiter_connection.submit_request_count("reattach-me") == 1  # reattached, not paid again
    assert aireiter_connection.query_count("reattach-me") == 1  # the reattach's lookup, and nothing more
    assert deferred.value.trigger.wait.first_poll_at >= before + 40
