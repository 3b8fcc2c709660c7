"""Run in a subprocess by ``test_callback_wake_db.py``, with its own ``AIRFLOW_HOME`` and SQLite database.

Never imported by pytest: Airflow reads its configuration once per process, and the rest of the test
suite runs with the default one. Usage: ``python db_scenario.py RESULT_JSON BULK_COUNT``. The test uses
SQLite; pointing ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` at an empty PostgreSQL database works too.

It builds a real metadata database, parks task instances in ``DEFERRED`` on real trigger rows, wakes
them through :mod:`airflow_provider_aireiter.webhook.receiver` and through HTTP on Airflow's own API app
(with the plugin mounted by Airflow itself), and writes what it observed to ``RESULT_JSON``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any


def _load_compat() -> Any:
    """``tests/compat.py``, loaded by path: the repository root stays off ``sys.path`` (see the test)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("aireiter_tests_compat", Path(__file__).parents[1] / "compat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if not os.environ.get("AIRFLOW_HOME") or not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
    raise SystemExit("refusing to run without an explicit AIRFLOW_HOME and metadata database")

compat = _load_compat()

CONN_ID = "aireiter_cb"
SECRET = "s3cret-0123456789abcdef"  # the same as tests/webhook/helpers.py
DAG_ID = "aireiter_callback_scenario"
RUN_ID = "scenario_run"
CLASSPATH = "airflow_provider_aireiter.triggers.aireiter.AireiterTaskTrigger"

#: task_id -> how it waits: (trigger classpath, out_task_id, how kwargs are stored, TI state, trigger conn,
#: seconds from now until its deferral has settled)
#: storage: "plain" as the execution API stores a worker's DeferTask (serde JSON, unencrypted),
#: "fernet" as ``Trigger(kwargs=...)`` does, "foreign" encrypted with a key this deployment lacks
WAITERS: dict[str, tuple[str, str, str, str, str, float]] = {
    "plain_job1": (CLASSPATH, "job-1", "plain", "deferred", CONN_ID, -1),
    "encrypted_job2": (CLASSPATH, "job-2", "fernet", "deferred", CONN_ID, -1),
    "other_job3": (CLASSPATH, "job-3", "plain", "deferred", CONN_ID, -1),
    "other_class_job1": ("some.other.Trigger", "job-1", "plain", "deferred", CONN_ID, -1),
    "running_job1": (CLASSPATH, "job-1", "plain", "running", CONN_ID, -1),  # a trigger row, not deferred
    "unreadable_job1": (CLASSPATH, "job-1", "foreign", "deferred", CONN_ID, -1),
    "other_conn_job1": (CLASSPATH, "job-1", "plain", "deferred", "aireiter_other", -1),
    "unsettled_job4": (CLASSPATH, "job-4", "plain", "deferred", CONN_ID, 3600),
    "http_job": (CLASSPATH, "job-http", "plain", "deferred", CONN_ID, -1),
    "late_job": (CLASSPATH, "job-late", "plain", "running", CONN_ID, -1),  # defers after its callback
}


def setup_database(bulk: int) -> dict[str, Any]:
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.sdk import DAG, BaseOperator
    from airflow.utils.db import initdb
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger

    started = time.monotonic()
    initdb()

    class WaitingOperator(BaseOperator):
        def execute(self, context: Any) -> None:
            pass

    with DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
        for task_id in [*WAITERS, "bulk"]:
            WaitingOperator(task_id=task_id)

    def trigger_row(
        classpath: str, out_task_id: str, storage: str, conn_id: str = CONN_ID, settle: float = -1
    ) -> Trigger:
        kwargs = AireiterTaskTrigger(
            out_task_id=out_task_id,
            deadline=time.time() + 3600,
            aireiter_conn_id=conn_id,
            resume_not_before=time.time() + settle,
        ).serialize()[1]
        if storage == "fernet":
            return Trigger(classpath=classpath, kwargs=kwargs)
        row = Trigger(classpath=classpath, kwargs={})
        row.encrypted_kwargs = json.dumps(compat.worker_encoded(kwargs))
        if storage == "foreign":
            from cryptography.fernet import Fernet

            other = Fernet(Fernet.generate_key())
            row.encrypted_kwargs = other.encrypt(row.encrypted_kwargs.encode()).decode()
        return row

    def park(ti: TaskInstance, trigger: Trigger, state: str) -> None:
        ti.state = TaskInstanceState(state)
        ti.trigger_id = trigger.id
        ti.next_method = "execute_complete"
        ti.next_kwargs = compat.stored_next_kwargs({"out_task_id": "kept"})

    with create_session() as session:
        session.merge(DagBundleModel(name="scenario"))
        session.flush()
        compat.write_dag_to_db(dag, "scenario", session)
        session.flush()
        serialized = SerializedDagModel.get(DAG_ID, session=session)
        assert serialized is not None
        sdag = serialized.dag
        run = sdag.create_dagrun(
            run_id=RUN_ID,
            run_after=datetime.now(timezone.utc),
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        tis = {ti.task_id: ti for ti in run.get_task_instances(session=session)}
        for task_id, (classpath, out_task_id, storage, state, conn_id, settle) in WAITERS.items():
            trigger = trigger_row(classpath, out_task_id, storage, conn_id, settle)
            session.add(trigger)
            session.flush()
            park(tis[task_id], trigger, state)

        # Many more deferred AIReiter tasks (extra map indexes of one task), to measure the cost.
        bulk_task = sdag.get_task("bulk")
        version_id = tis["bulk"].dag_version_id
        triggers = [trigger_row(CLASSPATH, f"bulk-{i}", "fernet" if i % 2 else "plain") for i in range(bulk)]
        session.add_all(triggers)
        session.flush()
        for i, trigger in enumerate(triggers):
            ti = TaskInstance(bulk_task, dag_version_id=version_id, run_id=RUN_ID, map_index=i)
            park(ti, trigger, "deferred")
            session.add(ti)
    return {"setup_seconds": round(time.monotonic() - started, 2), "started_at": time.time()}


def states() -> dict[str, dict[str, Any]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        stmt = select(TaskInstance).where(TaskInstance.dag_id == DAG_ID, TaskInstance.map_index == -1)
        for ti in session.scalars(stmt):
            kwargs = compat.read_next_kwargs(ti.next_kwargs) if ti.next_kwargs else None
            found[ti.task_id] = {
                "state": getattr(ti.state, "value", ti.state),
                "trigger_id": ti.trigger_id,
                "next_kwargs": kwargs,
            }
    return found


def set_state(task_id: str, state: str) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == DAG_ID, TaskInstance.task_id == task_id)
            .values(state=state)
        )


def wait_for_state(task_id: str, state: str, seconds: float) -> str:
    """The task's state once it is ``state``, or whatever it is after ``seconds`` (bounded)."""
    deadline = time.monotonic() + seconds
    current = states()[task_id]["state"]
    while current != state and time.monotonic() < deadline:
        time.sleep(0.2)
        current = states()[task_id]["state"]
    return str(current)


def wake(out_task_id: str) -> tuple[int, int, float, float | None]:
    """Call the wake function in its own session; returns (woken, SQL statements, seconds, held until)."""
    from airflow import settings
    from sqlalchemy import event

    from airflow_provider_aireiter.webhook.receiver import wake_waiting_tasks

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    engine = settings.engine
    assert engine is not None
    event.listen(engine, "before_cursor_execute", count)
    try:
        started = time.monotonic()
        result = wake_waiting_tasks(CONN_ID, out_task_id)
        return result.woken, statements, round(time.monotonic() - started, 4), result.held_until
    finally:
        event.remove(engine, "before_cursor_execute", count)


def http_checks() -> dict[str, Any]:
    """Serve Airflow's own API app (plugins mounted by Airflow) on 127.0.0.1 and call it."""
    import requests
    import uvicorn
    from airflow.api_fastapi.app import create_app

    from airflow_provider_aireiter.hooks.aireiter import callback_token, callback_url

    app = create_app(apps="core")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}

    def post(url: str, body: Any = None) -> tuple[int, Any]:
        answer = requests.post(url, json=body if body is not None else {"status": "success"}, timeout=30)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text[:200]

    def url_for(out_task_id: str) -> str:
        return callback_url(base, SECRET, out_task_id, CONN_ID)

    try:
        results["core_api_without_token"] = requests.get(f"{base}/api/v2/dags", timeout=30).status_code
        results["forged"] = post(f"{base}/aireiter/callback/{CONN_ID}/job-http?token={'0' * 64}")
        results["state_after_forged"] = states()["http_job"]["state"]
        token = callback_token(SECRET, CONN_ID, "job-http")
        results["replayed_other_id"] = post(f"{base}/aireiter/callback/{CONN_ID}/job-3?token={token}")
        results["job3_after_replay"] = states()["other_job3"]["state"]
        results["unknown_conn"] = post(f"{base}/aireiter/callback/no_such_conn/job-http?token={token}")
        results["missing_token"] = post(f"{base}/aireiter/callback/{CONN_ID}/job-http")
        results["get"] = requests.get(url_for("job-http"), timeout=30).status_code
        results["unknown_task"] = post(url_for("nobody-waits"))
        started = time.monotonic()
        results["valid"] = post(url_for("job-http"))
        results["valid_ms"] = round((time.monotonic() - started) * 1000, 1)
        results["state_after_valid"] = states()["http_job"]
        results["duplicate"] = post(url_for("job-http"))
        # A callback signed for another connection, posted under it: that connection's triggers only.
        results["other_conn_token_under_cb"] = post(
            f"{base}/aireiter/callback/{CONN_ID}/job-1?token={callback_token(SECRET, 'aireiter_other', 'job-1')}"
        )
        # A callback that arrives before its task has deferred: kept, and it wakes the task once it defers.
        results["early"] = post(url_for("job-late"))
        results["late_job_before_deferral"] = states()["late_job"]["state"]
        set_state("late_job", "deferred")
        results["late_job_after_deferral"] = wait_for_state("late_job", "scheduled", 15)
        results["late_job_event"] = states()["late_job"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return results


def main() -> None:
    result_path, bulk = sys.argv[1], int(sys.argv[2])
    results: dict[str, Any] = setup_database(bulk)
    results["before"] = states()
    results["wake_job1"] = wake("job-1")
    results["after_job1"] = states()
    results["wake_job1_again"] = wake("job-1")
    results["wake_unknown"] = wake("nobody-waits")
    results["wake_job2"] = wake("job-2")
    results["after_job2"] = states()
    results["wake_unsettled"] = wake("job-4")
    results["after_unsettled"] = states()
    from airflow_provider_aireiter.webhook.receiver import clear_memo

    clear_memo()
    results["bulk_cold"] = wake(f"bulk-{bulk // 2}")
    results["bulk_warm"] = wake(f"bulk-{bulk // 2 + 1}")
    results["http"] = http_checks()
    names, import_errors = compat.loaded_plugins()
    results["plugins"] = {"names": [p.name for p in names], "import_errors": import_errors}
    with open(result_path, "w") as handle:
        json.dump(results, handle, default=str)


if __name__ == "__main__":
    main()
