"""A worker killed mid-wait, then the task run again: one submit. Asset extras, the link's XCom, on_kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import DAGS_FOLDER
from tests.operators.dagtest_helpers import dag_source, run_dag, submit_bodies

pytestmark = pytest.mark.usefixtures("airflow_db")

CRASH_DAG = """
video = Seedance15ProOperator(task_id="video", prompt="a long video", poll_interval=0.1,
                              output_path="file://" + os.environ["OUT_DIR"] + "/")
collect({"video": video.output})
"""

RUNNER = textwrap.dedent(
    """
    import importlib.util, sys
    from datetime import datetime, timezone
    spec = importlib.util.spec_from_file_location("crash_dag", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    module.dag.test(logical_date=when, run_after=when)
    """
)


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.5, 4.0)}, duplicate_policy="create_new")
def test_worker_killed_mid_wait_then_rerun_submits_once(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any
) -> None:
    os.environ["OUT_DIR"] = str(tmp_path / "media")
    dag_file = Path(DAGS_FOLDER, "crash_dag.py")
    dag_file.parent.mkdir(parents=True, exist_ok=True)
    dag_file.write_text(dag_source("crash_dag", CRASH_DAG))
    worker = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(dag_file)],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while not submit_bodies(aireiter_connection) and time.time() < deadline:
            time.sleep(0.05)
        assert submit_bodies(aireiter_connection), "the worker never submitted"
        time.sleep(0.3)  # mid-wait: submitted, polling, not finished (the video takes 4.5 s)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    (first_submit,) = submit_bodies(aireiter_connection)
    out_task_id = first_submit["out_task_id"]
    task = aireiter_connection.task(out_task_id)
    assert task is not None and task["status"] != "completed"

    # The same task instance runs again (dag.test clears it: a new try of the same run).
    from datetime import datetime, timezone

    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    state, results = run_dag("crash_dag", CRASH_DAG, tmp_path / "results", logical_date=when, run_after=when)
    assert state == "success"
    assert results["video"]["out_task_id"] == out_task_id
    assert aireiter_connection.submit_count(out_task_id) == 1
    assert len(submit_bodies(aireiter_connection)) == 1
    assert "reattaching, nothing is submitted" in logs()
    assert Path(results["video"]["outputs"][0]["path"].removeprefix("file://")).exists()


def test_asset_extra_and_output_link_xcom(aireiter_connection: Emulator, tmp_path: Path) -> None:
    body = """
    from airflow.sdk import Asset
    image = SeedreamV5LiteOperator(task_id="image", prompt="asset", poll_interval=0.1,
                                   outlets=[Asset(name="aireiter_test_images", uri="file:///tmp/aireiter-test-images")])
    collect({"image": image.output})
    """
    state, results = run_dag("asset_dag", body, tmp_path)
    assert state == "success"
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "aireiter_test_images")
            .all()
        )
        from airflow_provider_aireiter.operators.aireiter import AireiterOutputLink

        link_key = AireiterOutputLink().xcom_key  # what the UI reads: the link Airflow stored at the end
        links = session.query(XComModel).filter_by(dag_id="asset_dag", key=link_key).all()
        extra = events[-1].extra
        link_value = links[-1].value
    assert extra["out_task_id"] == results["image"]["out_task_id"]
    assert extra["outputs"] == [{"url": results["image"]["outputs"][0]["url"], "path": None}]
    import json

    stored = json.loads(link_value) if isinstance(link_value, str) and link_value.startswith('"') else link_value
    assert stored == results["image"]["outputs"][0]["url"]


def test_on_kill_names_the_remote_task(logs: Any) -> None:
    from airflow_provider_aireiter.operators.aireiter import SeedreamV5LiteOperator

    SeedreamV5LiteOperator(task_id="k", prompt="x").on_kill()
    text = logs()
    assert "no cancel endpoint" in text and "keeps running" in text
