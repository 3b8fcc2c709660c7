"""The provider on Airflow's distributed setup, under faults.

CeleryExecutor with Redis, two schedulers, two triggerers, two api-servers and two Celery workers on
one PostgreSQL database, one dag-processor, all on loopback (``Topology`` in deployment.py). Every
process names its component as its hostname, so the database says which triggerer held which
trigger and which worker ran which try. Three faults, each at its moment, with evidence:

1. a triggerer killed (SIGKILL) while every generation waits in the triggerers: its triggers must
   move to the other one and finish;
2. a Celery worker killed (SIGKILL) while the submit it sent is still open at the service: the
   task's retry must reattach, not pay again;
3. an api-server restarted while a callback is pending in its memory (it came while the task's
   deferral was settling): what the user gets instead is measured (the fallback poll).

Asserted over the whole run: every task instance ``success``, exactly one submit per ``out_task_id``
received by the service (which charges a second one), every callback answered 2xx, every file complete.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from airflow_provider_aireiter.testing.emulator import Emulator, Fault
from tests.e2e.deployment import AirflowDeployment, Connection, Setup, Topology, direct_session, epoch, wait_for

DAGS = Path(__file__).parent / "distributed_dags"
TOPOLOGY = Topology(schedulers=2, triggerers=2, api_servers=2, celery_workers=2)
SECRET = "distributed-e2e-callback-secret"
LOAD_TASKS = 16  # 12 with callbacks (6 to each api-server), 4 polling only
EVIDENCE: dict[str, Any] = {}
CALLBACKS = {"callback_secret": SECRET, "timeout": 30}

SETUP = Setup(
    name="distributed",
    dag_files=[DAGS / "distributed_dags.py"],
    # Generations run until the test completes them (at the moment each fault needs), except the quick one.
    # create_new: a second submit of an out_task_id would create (and charge) a second task.
    emulator={
        "durations": {"*": (0.0, 36_000.0), "quick_image_model": (0.0, 3.0)},
        "duplicate_policy": "create_new",
        "credits": 10**6,
    },
    connections={
        "aireiter_cb_a": Connection(callbacks_to=0, extra=CALLBACKS),
        "aireiter_cb_b": Connection(callbacks_to=1, extra=CALLBACKS),
        "aireiter_polling": Connection(extra={"timeout": 30}),
    },
    serve_media=True,
    options={"topology": TOPOLOGY, "startup_timeout": 300.0},
)


def wait_until(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; an exception of the check fails at once."""
    return wait_for(what, check, timeout=timeout, interval=every, tolerate=())


def triggers_by_triggerer(dep: AirflowDeployment, dag_id: str, run_id: str) -> dict[str, str | None]:
    """``task[map]`` -> the hostname (component) of the triggerer holding its trigger, for deferred tasks."""
    rows = dep.query(
        "SELECT ti.task_id, ti.map_index, j.hostname FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "LEFT JOIN job j ON j.id = t.triggerer_id WHERE ti.dag_id = :dag AND ti.run_id = :run AND ti.state = 'deferred'",
        dag=dag_id,
        run=run_id,
    )
    return {f"{task}[{index}]": host for task, index, host in rows}


def test_a_triggerer_killed_while_everything_waits(deployment: AirflowDeployment, emulator: Emulator) -> None:
    run_id = deployment.trigger("distributed_load")
    deferred = wait_until(
        "every generation to wait in a triggerer",
        lambda: (
            held
            if len(held := triggers_by_triggerer(deployment, "distributed_load", run_id)) == LOAD_TASKS
            and all(held.values())
            else None
        ),
        timeout=240,
    )
    # The victim: a triggerer holding polling-only tasks, which nothing but a moved trigger can finish.
    polled = {host for task, host in deferred.items() if task.startswith("polling")}
    victim = max(polled, key=lambda h: sum(1 for v in deferred.values() if v == h))
    survivor = next(name for name in TOPOLOGY.names("triggerer") if name != victim)
    moved_tasks = sorted(task for task, host in deferred.items() if host == victim)
    killed_at = time.time()
    deployment.kill(victim, signal.SIGKILL)

    def moved() -> dict[str, str | None] | None:
        now = triggers_by_triggerer(deployment, "distributed_load", run_id)
        picked = {task: now.get(task) for task in moved_tasks}
        return picked if all(host == survivor for host in picked.values()) else None

    after = wait_until(f"the triggers of {victim} to move to {survivor}", moved, timeout=120)
    moved_after = time.time() - killed_at
    # Only now do the generations complete: the moved triggers must see it (polling-only tasks) and the
    # api-servers' wakes must reach tasks whose triggers moved (the others).
    for body in submits(emulator):
        emulator.complete_task(body["out_task_id"])
    assert deployment.wait_for_run("distributed_load", run_id, timeout=360) == "success"
    assert set(deployment.states("distributed_load", run_id).values()) == {"success"}
    polling_moved = [t for t in moved_tasks if t.startswith("polling")]
    assert polling_moved, moved_tasks
    EVIDENCE["triggerer"] = {
        "killed": victim,
        "at": killed_at,
        "held before": {task: deferred[task] for task in moved_tasks},
        "held after": after,
        "moved within s": round(moved_after, 1),
        "polling-only tasks among them (finished by the moved triggers)": polling_moved,
    }
    print("triggerer fault:", json.dumps(EVIDENCE["triggerer"], indent=1))


def submits(emulator: Emulator) -> list[dict[str, Any]]:
    return [r["body"] for r in emulator.requests() if r["path"].endswith("/submit") and isinstance(r["body"], dict)]


def test_a_celery_worker_killed_during_a_submit(deployment: AirflowDeployment, emulator: Emulator) -> None:
    before = len(submits(emulator))
    emulator.faults.script("submit", [Fault("slow", seconds=6.0)])  # the service holds the submit open
    run_id = deployment.trigger("distributed_worker_kill")
    sent = wait_until("the victim's submit to reach the service", lambda: submits(emulator)[before:], timeout=180)
    out_task_id = sent[0]["out_task_id"]
    ti = deployment.api("GET", f"/api/v2/dags/distributed_worker_kill/dagRuns/{run_id}/taskInstances/victim")
    worker = ti["hostname"]
    assert worker in TOPOLOGY.names("celery-worker") and ti["state"] == "running", ti
    in_flight = emulator.task(out_task_id) is None  # the slow submit has not been processed yet
    deployment.kill(worker, signal.SIGKILL)
    killed_at = time.time()
    assert in_flight, "the submit was answered before the worker was killed"

    def retried() -> dict[str, Any] | None:
        ti = deployment.api("GET", f"/api/v2/dags/distributed_worker_kill/dagRuns/{run_id}/taskInstances/victim")
        return ti if ti["try_number"] >= 2 and ti["state"] == "deferred" else None

    wait_until("the retry to reattach and defer", retried, timeout=240)
    emulator.complete_task(out_task_id)
    assert deployment.wait_for_run("distributed_worker_kill", run_id, timeout=240) == "success"
    final = deployment.api("GET", f"/api/v2/dags/distributed_worker_kill/dagRuns/{run_id}/taskInstances/victim")
    assert final["try_number"] >= 2 and final["hostname"] != worker, final
    assert emulator.submit_request_count(out_task_id) == 1
    assert emulator.submit_count(out_task_id) == 1
    log = deployment.task_log("distributed_worker_kill", run_id, "victim", try_number=final["try_number"])
    assert "reattaching, nothing is submitted" in log, log[-3000:]
    EVIDENCE["worker"] = {
        "killed": worker,
        "at": killed_at,
        "doing": f"the submit of {out_task_id}, held open by the service for 6 s (task runner killed too)",
        "retried on": final["hostname"],
        "try": final["try_number"],
    }
    print("worker fault:", json.dumps(EVIDENCE["worker"], indent=1))
    deployment.restart(worker)


def test_an_api_server_restarted_while_a_callback_is_pending(deployment: AirflowDeployment, emulator: Emulator) -> None:
    seen = len(emulator.callbacks())
    before = len(submits(emulator))
    run_id = deployment.trigger("distributed_pending")
    sent = wait_until("the quick task's submit", lambda: submits(emulator)[before:], timeout=180)
    out_task_id = sent[0]["out_task_id"]

    def pending() -> dict[str, Any] | None:
        for record in emulator.callbacks()[seen:]:
            answer = (record.get("answer") or "").replace(" ", "")
            if record["out_task_id"] == out_task_id and record["delivered"] and '"pending":true' in answer:
                return record
        return None

    callback = wait_until("its callback to be kept pending by api-server-2", pending, timeout=180, every=0.1)
    assert callback["path"].startswith("/aireiter/callback/aireiter_cb_b/")
    restart_began = time.time()
    deployment.restart("api-server-2", signal.SIGKILL)  # as a crash or an OOM kill: nothing runs on
    restarted_at = time.time()
    assert deployment.wait_for_run("distributed_pending", run_id, timeout=240) == "success"
    ti = deployment.api("GET", f"/api/v2/dags/distributed_pending/dagRuns/{run_id}/taskInstances/quick")
    remote = emulator.task(out_task_id) or {}
    completed = epoch(remote.get("completed_at"))
    ended = epoch(ti["end_date"])
    woke = f"callback for {out_task_id} woke" in deployment.process_log("api-server-2")
    EVIDENCE["api_server"] = {
        "callback kept pending at": callback["time"],
        "api-server-2 killed at": restart_began,
        "api-server-2 serving again at": restarted_at,
        "remote task completed at": completed,
        "Airflow task ended at": ended,
        "task ended s after completion": round(ended - completed, 1),
        "fallback poll every s": 30,
    }
    print("api-server fault:", json.dumps(EVIDENCE["api_server"], indent=1))
    # The pending wake died with the process: nothing woke the task, its trigger's fallback poll
    # finished it, later than the wake would have (the settle hold, 15 s after the deferral).
    assert callback["time"] < restart_began < ended
    assert not woke
    assert ended - completed > 25, EVIDENCE["api_server"]


def test_one_submit_each_every_callback_answered_and_complete_files(
    deployment: AirflowDeployment, emulator: Emulator, media: Path
) -> None:
    ids = [body["out_task_id"] for body in submits(emulator)]
    assert len(ids) >= LOAD_TASKS, ids
    assert len(ids) == len(set(ids)), "an out_task_id was submitted twice"
    for out_task_id in ids:
        assert emulator.submit_count(out_task_id) == 1, out_task_id
    callbacks = emulator.callbacks()
    assert callbacks and all(c["delivered"] for c in callbacks), [c for c in callbacks if not c["delivered"]]
    by_api_server = {
        path: sum(1 for c in callbacks if f"/{path}/" in c["path"]) for path in ("aireiter_cb_a", "aireiter_cb_b")
    }
    assert by_api_server["aireiter_cb_a"] >= 6 and by_api_server["aireiter_cb_b"] >= 6, by_api_server
    fetch = direct_session()
    checked = 0
    for dag_id in ("distributed_load", "distributed_worker_kill", "distributed_pending"):
        for run in deployment.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]:
            for key, result in deployment.results(dag_id, run["dag_run_id"]).items():
                assert result and result["outputs"], (dag_id, key, result)
                for output in result["outputs"]:
                    stored = Path(output["path"].removeprefix("file://"))
                    assert stored.read_bytes() == fetch.get(output["url"], timeout=60).content, stored
                    checked += 1
    assert checked >= len(ids)
    print("fault evidence:", json.dumps(EVIDENCE, indent=1, default=str))
