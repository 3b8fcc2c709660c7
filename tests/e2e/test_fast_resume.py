"""Deferred tasks resumed seconds after they deferred, on a real deployment.

The promise under attack: a deferrable AIReiter task ends SUCCESS, having paid once and with its
file on disk, however soon after its deferral it is resumed. Resumes come two ways:

* the completion callback: the provider's receiver on the API server calls ``Trigger.submit_event``;
* the trigger itself, when its poll sees the remote task finished.

Airflow's scheduler can handle the executor's "success" event of the deferring try *after* it has
already queued or started the resumed try; it then fails the task ("state mismatch" in its log, and
the resumed try's calls to the execution API get HTTP 409 ``previous_state: failed``). See apache/airflow#66374, #67287,
#71580 and #72716. The race needs a resume within a few seconds of the deferral, so this module
makes exactly that happen:

* ``fast_resume_callback``: mapped tasks on a connection with callback settings; the test finishes
  each remote task 0.5 to 3 s after its submit, so its callback arrives about then. Their fallback
  query comes only after 600 s, so a task that ends within the test was woken by its callback.
* ``fast_resume_polling``: mapped tasks on a connection without them, polling every second; the test
  finishes each remote task 1 to 3 s after it saw the Airflow task deferred.

Both run side by side, in three rounds (20 + 10 tasks each): the race needs free executor slots for a
quick requeue, so a bigger batch at once would provoke it less, not more.

The remote tasks take 600 s on their own, so only the test's background thread finishes them, at
moments drawn from a seeded generator (``AIREITER_E2E_SEED=<n>`` draws the same moments again). The deployment runs
with Airflow's and the provider's defaults; in particular ``[aireiter] resume_settle_seconds`` is not
set (the harness passes no ``AIRFLOW*`` variable of this process on).

Nothing here asserts on timing; the callback-to-finish latencies are printed.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_aireiter.api_types import default_out_task_id
from airflow_provider_aireiter.testing.emulator import Emulator
from tests.e2e.deployment import AirflowDeployment, Connection, DagRunTimeout, Setup, direct_session, epoch

DAG_FILE = Path(__file__).parent / "fast_resume_dags" / "fast_resume_dags.py"
CALLBACK_DAG = "fast_resume_callback"
POLLING_DAG = "fast_resume_polling"
TASK_ID = "generate"
#: mapped tasks per run; more at once saturate the executor (8 slots), which delays the resumes and
#: hides the race rather than provoking it, so the test repeats small rounds instead
CALLBACK_TASKS = 20
POLLING_TASKS = 10
ROUNDS = 3
#: seconds after the submit at which a callback task's remote task finishes (its callback follows)
CALLBACK_AFTER_SUBMIT = (0.5, 3.0)
#: seconds after the observed deferral at which a polling task's remote task finishes
POLLING_AFTER_DEFERRAL = (1.0, 3.0)
#: how long a remote task would take by itself: far beyond the test, so only the test finishes it
REMOTE_SECONDS = 600.0
#: longest wait for the two runs of a round; far below the callback tasks' 600 s fallback query
RUN_TIMEOUT = 240.0
SEED_ENV = "AIREITER_E2E_SEED"

SETUP = Setup(
    name="fast-resume",
    dag_files=[DAG_FILE],
    # create_new: a second submit would create a second task, and show up in the counts
    emulator={"durations": {"*": (0.0, REMOTE_SECONDS)}, "credits": 1_000_000, "duplicate_policy": "create_new"},
    connections={
        "aireiter_default": Connection(
            callbacks_to=0, extra={"callback_secret": "fast-resume-callback-signing-secret"}
        ),
        "aireiter_polling": Connection(),
    },
    env={
        "AIREITER_FAST_RESUME_CALLBACK_TASKS": str(CALLBACK_TASKS),
        "AIREITER_FAST_RESUME_POLLING_TASKS": str(POLLING_TASKS),
    },
)


@dataclass
class Plan:
    """When one remote task is to finish, and what happened to it."""

    round_no: int
    dag_id: str
    run_id: str
    map_index: int
    out_task_id: str
    #: seconds after the anchor (the submit, or the observed deferral)
    delay: float
    #: epoch seconds of the submit (callback tasks) or of the first "deferred" sighting (polling tasks)
    anchor: float | None = None
    #: epoch seconds at which the test finished the remote task
    completed_at: float | None = None
    error: str | None = None
    #: the task instance as the REST API showed it after the run
    ti: dict[str, Any] | None = None

    @property
    def uses_callback(self) -> bool:
        return self.dag_id == CALLBACK_DAG

    @property
    def label(self) -> str:
        return f"round {self.round_no} {self.dag_id}[{self.map_index}]"

    @property
    def state(self) -> str | None:
        return None if self.ti is None else self.ti.get("state")


class RemoteFinisher:
    """Finishes every planned remote task at its moment, from two background threads.

    One thread finds the submits in the emulator and finishes due tasks; the other watches the polling
    run's task instances through the REST API (with its own HTTP session) for their deferral. Both stop
    by themselves when every task is finished, when :meth:`stop` is called, or after ``time_limit``.
    """

    def __init__(
        self,
        emulator: Emulator,
        api_url: str,
        plans: list[Plan],
        polling_run: tuple[str, str],
        time_limit: float,
    ) -> None:
        self._emulator = emulator
        self._api_url = api_url
        self.plans = plans
        self._polling_run = polling_run
        self._by_polling_index = {p.map_index: p for p in plans if not p.uses_callback}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._deadline = time.monotonic() + time_limit
        self.rest_errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._finish_due, name="fast-resume-finisher", daemon=True),
            threading.Thread(target=self._watch_deferrals, name="fast-resume-deferrals", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _active(self) -> bool:
        return not self._stopping.is_set() and time.monotonic() < self._deadline

    def _open(self) -> list[Plan]:
        with self._lock:
            return [p for p in self.plans if p.completed_at is None and p.error is None]

    def _finish_due(self) -> None:
        while self._active():
            open_plans = self._open()
            if not open_plans:
                return
            submitted = self._emulator.submits()
            for plan in open_plans:
                if plan.uses_callback and plan.anchor is None and plan.out_task_id in submitted:
                    data = self._emulator.task(plan.out_task_id)
                    if data is not None:
                        with self._lock:
                            plan.anchor = epoch(str(data["created_at"]))
                with self._lock:
                    due = plan.anchor is not None and time.time() >= plan.anchor + plan.delay
                if not due:
                    continue
                try:
                    self._emulator.complete_task(plan.out_task_id)
                except (KeyError, ValueError) as exc:
                    with self._lock:
                        plan.error = f"could not finish the remote task: {type(exc).__name__}: {exc}"
                else:
                    with self._lock:
                        plan.completed_at = time.time()
            self._stopping.wait(0.05)

    def _watch_deferrals(self) -> None:
        session = direct_session()
        dag_id, run_id = self._polling_run
        url = f"{self._api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        token: str | None = None
        try:
            while self._active():
                with self._lock:
                    unseen = [p for p in self._by_polling_index.values() if p.anchor is None]
                if not unseen:
                    return
                try:
                    if token is None:
                        answer = session.get(f"{self._api_url}/auth/token", timeout=30)
                        answer.raise_for_status()
                        token = str(answer.json()["access_token"])
                    resp = session.get(
                        url, params={"limit": 100}, headers={"Authorization": f"Bearer {token}"}, timeout=30
                    )
                    seen = time.time()
                    if resp.status_code == 401:
                        token = None
                        self._stopping.wait(0.2)
                        continue
                    if resp.status_code == 404:  # the run is not created yet
                        self._stopping.wait(0.2)
                        continue
                    resp.raise_for_status()
                    for ti in resp.json().get("task_instances", []):
                        plan = self._by_polling_index.get(int(ti.get("map_index", -1)))
                        if plan is not None and ti.get("state") == "deferred":
                            with self._lock:
                                if plan.anchor is None:
                                    plan.anchor = seen
                except (requests.RequestException, ValueError, KeyError) as exc:
                    self.rest_errors.append(f"{type(exc).__name__}: {exc}")
                self._stopping.wait(0.2)
        finally:
            session.close()


@pytest.fixture(scope="module")
def seed() -> int:
    value = int(os.environ[SEED_ENV]) if os.environ.get(SEED_ENV) else random.SystemRandom().randrange(2**31)
    print(f"\nfast-resume seed: {value} (replay with {SEED_ENV}={value})")
    return value


def _plans(round_no: int, run_ids: dict[str, str], rng: random.Random) -> list[Plan]:
    plans: list[Plan] = []
    for dag_id, count in ((CALLBACK_DAG, CALLBACK_TASKS), (POLLING_DAG, POLLING_TASKS)):
        run_id = run_ids[dag_id]
        for i in range(count):
            plans.append(Plan(round_no, dag_id, run_id, i, default_out_task_id(dag_id, TASK_ID, run_id, i), 0.0))
    for plan in plans:
        plan.delay = rng.uniform(*(CALLBACK_AFTER_SUBMIT if plan.uses_callback else POLLING_AFTER_DEFERRAL))
    return plans


def _run_round(dep: AirflowDeployment, emulator: Emulator, plans: list[Plan], run_ids: dict[str, str]) -> list[str]:
    """Trigger the round's two runs, finish their remote tasks on plan, wait for both runs to end."""
    problems: list[str] = []
    for dag_id in run_ids:
        dep.wait_for_dag(dag_id)
    finisher = RemoteFinisher(
        emulator, dep.api_url, plans, (POLLING_DAG, run_ids[POLLING_DAG]), time_limit=RUN_TIMEOUT + 30
    )
    started = time.monotonic()
    finisher.start()
    try:
        for dag_id, run_id in run_ids.items():
            dep.trigger(dag_id, run_id=run_id)
        for dag_id, run_id in run_ids.items():
            remaining = max(10.0, RUN_TIMEOUT - (time.monotonic() - started))
            try:
                run_state = dep.wait_for_run(dag_id, run_id, timeout=remaining, raise_on_failure=False)
            except DagRunTimeout as exc:
                run_state = exc.state or "timed out"
                problems.append(f"run {dag_id}/{run_id} did not end within {RUN_TIMEOUT:.0f} s (state {run_state!r})")
            print(f"run {dag_id}/{run_id}: {run_state} after {time.monotonic() - started:.1f} s")
    finally:
        finisher.stop()
    if finisher.rest_errors:
        print(f"REST errors while watching deferrals ({len(finisher.rest_errors)}): {finisher.rest_errors[:3]}")
    for dag_id, run_id in run_ids.items():
        by_index = {int(ti.get("map_index", -1)): ti for ti in dep.task_instances(dag_id, run_id)}
        for plan in plans:
            if plan.run_id == run_id:
                plan.ti = by_index.get(plan.map_index)
    return problems


def _answer_kind(answer: Any) -> str:
    """What the callback receiver said it did: ``woken``, ``pending`` (kept for later) or ``other``."""
    try:
        body = json.loads(answer)
    except (TypeError, ValueError):
        return "other"
    if not isinstance(body, dict):
        return "other"
    if isinstance(body.get("woken"), int) and body["woken"] > 0:
        return "woken"
    return "pending" if body.get("pending") else "other"


def _tail_lines(lines: list[str], count: int) -> list[str]:
    return lines[-count:] if len(lines) > count else lines


def _diagnose(dep: AirflowDeployment, plan: Plan) -> str:
    """The scheduler's and API server's lines about one task instance, and its log's tail."""
    ti = plan.ti
    if ti is None:
        return f"=== {plan.label}: no task instance\n"
    ti_id = str(ti.get("id"))
    mismatch = re.compile(r"state mismatch|reported that the task instance|finished with state", re.IGNORECASE)
    scheduler = [line for line in dep.process_log("scheduler").splitlines() if ti_id in line]
    relevant = [line for line in scheduler if mismatch.search(line)] or scheduler
    api = [
        line
        for line in dep.process_log("api-server").splitlines()
        if ti_id in line and re.search(r"409|invalid state|previous_state", line, re.IGNORECASE)
    ]
    parts = [f"=== {plan.label} {plan.out_task_id}: state {plan.state!r}, try {ti.get('try_number')}"]
    parts.append("  scheduler log lines:")
    parts += [f"    {line[:600]}" for line in _tail_lines(relevant, 8)] or ["    (none)"]
    if api:
        parts.append("  api-server log lines:")
        parts += [f"    {line[:600]}" for line in _tail_lines(api, 6)]
    try:
        log = dep.task_log(plan.dag_id, plan.run_id, TASK_ID, int(ti.get("try_number") or 1), plan.map_index)
        tail = _tail_lines(log.splitlines(), 25)
    except Exception as exc:  # diagnostics must not hide the failure they explain
        tail = [f"(could not fetch the task log: {exc})"]
    parts.append("  task log (tail):")
    parts += [f"    {line[:600]}" for line in tail]
    return "\n".join(parts) + "\n"


def _media_folder(media: Path, plan: Plan) -> Path:
    return media / ("callback" if plan.uses_callback else "polling")


def _check_output(result: Any, folder: Path, plan: Plan, fetch: requests.Session) -> str | None:
    """``None`` when the task's one output is on disk, complete, byte for byte what AIReiter served."""
    outputs = result.get("outputs") if isinstance(result, dict) else None
    if not outputs or len(outputs) != 1:
        return f"{plan.label}: expected one output in the result, got {result!r}"
    output = outputs[0]
    expected = folder / f"{plan.out_task_id}_0.png"
    path = Path(str(output.get("path") or "").removeprefix("file://"))
    if path != expected:
        return f"{plan.label}: output stored at {path}, expected {expected}"
    if not path.is_file():
        return f"{plan.label}: {path} is missing"
    data = path.read_bytes()
    served = fetch.get(str(output["url"]), timeout=60)
    if served.status_code != 200 or data != served.content:
        return f"{plan.label}: {path} holds {len(data)} bytes, AIReiter served {len(served.content)} (HTTP {served.status_code})"
    if output.get("size") != len(data):
        return f"{plan.label}: result says {output.get('size')} bytes, the file has {len(data)}"
    return None


def _figures(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"
    )


def _end(plan: Plan) -> float | None:
    return epoch(plan.ti["end_date"]) if plan.ti and plan.ti.get("end_date") else None


def test_tasks_resumed_right_after_deferring_all_succeed(
    deployment: AirflowDeployment, emulator: Emulator, media: Path, seed: int, record_property: Any
) -> None:
    rng = random.Random(seed)
    plans: list[Plan] = []
    problems: list[str] = []
    for round_no in range(1, ROUNDS + 1):
        run_ids = {
            CALLBACK_DAG: f"fast_resume_cb_{seed}_{round_no}",
            POLLING_DAG: f"fast_resume_poll_{seed}_{round_no}",
        }
        batch = _plans(round_no, run_ids, rng)
        plans += batch
        problems += _run_round(deployment, emulator, batch, run_ids)
        print(f"round {round_no}: {sum(p.state != 'success' for p in batch)} of {len(batch)} task instances failed")

    callbacks = emulator.callbacks()
    submit_bodies = {
        r["body"]["out_task_id"]: r["body"]
        for r in emulator.requests()
        if r.get("path", "").endswith("/submit") and isinstance(r.get("body"), dict) and "out_task_id" in r["body"]
    }
    fetch = direct_session()
    failed = [p for p in plans if p.state != "success"]
    rows: list[str] = []
    after_callback: list[float] = []
    after_completion: list[float] = []
    answers: Counter[str] = Counter()
    for plan in plans:
        if plan.error:
            problems.append(f"{plan.label}: {plan.error}")
        elif plan.completed_at is None:
            problems.append(f"{plan.label}: the test never finished the remote task (anchor {plan.anchor})")
        # Paid once: one submit request, one task created.
        requests_sent = emulator.submit_request_count(plan.out_task_id)
        created = emulator.submit_count(plan.out_task_id)
        if requests_sent != 1 or created != 1:
            problems.append(
                f"{plan.label}: {requests_sent} submit request(s), {created} task(s) created; expected 1 and 1"
            )
        # The file, complete.
        if plan.state == "success":
            result = deployment.xcom(plan.dag_id, plan.run_id, TASK_ID, map_index=plan.map_index)
            wrong = _check_output(result, _media_folder(media, plan), plan, fetch)
            if wrong:
                problems.append(wrong)
        # The callback: delivered (2xx) for each callback task, never sent for a polling one.
        mine = [r for r in callbacks if r.get("out_task_id") == plan.out_task_id]
        delivered = [r for r in mine if r.get("delivered")]
        end = _end(plan)
        if plan.uses_callback:
            if not delivered:
                problems.append(f"{plan.label}: no callback delivered with a 2xx answer; attempts: {mine}")
            answers.update(_answer_kind(r.get("answer")) for r in delivered)
            latency = end - float(delivered[0]["time"]) if end is not None and delivered else None
            if latency is not None and plan.state == "success":
                after_callback.append(latency)
            rows.append(
                f"  {plan.label:36} {plan.state!s:8} callback +{plan.delay:.2f} s after submit, "
                f"answer {delivered[0].get('answer') if delivered else None!r}, "
                f"ended {'?' if latency is None else f'{latency:.2f}'} s after the callback"
            )
        else:
            if mine:
                problems.append(f"{plan.label}: a callback was sent for a polling-only task: {mine}")
            if "callback_url" in submit_bodies.get(plan.out_task_id, {}):
                problems.append(f"{plan.label}: its submit carried a callback_url")
            latency = end - plan.completed_at if end is not None and plan.completed_at is not None else None
            if latency is not None and plan.state == "success":
                after_completion.append(latency)
            rows.append(
                f"  {plan.label:36} {plan.state!s:8} finished remotely +{plan.delay:.2f} s after the deferral, "
                f"Airflow task ended {'?' if latency is None else f'{latency:.2f}'} s later"
            )
    # Nothing else in the media folders, and nothing partial: a file under a task's final name is the
    # whole image even when its task instance failed (its resumed try may have got that far).
    by_name = {f"{p.out_task_id}_0.png": p for p in plans}
    stray: list[str] = []
    failed_with_file = 0
    from airflow_provider_aireiter.hooks.aireiter import record_name

    records = {record_name(name) for name in by_name}  # what the media view checks, written by the provider
    for path in sorted(f for f in media.rglob("*") if f.is_file() and f.name not in records):
        owner = by_name.get(path.name)
        if owner is None or path.parent != _media_folder(media, owner):
            stray.append(str(path))
        elif owner.state != "success":
            failed_with_file += 1
            data = emulator.task(owner.out_task_id) or {}
            served = fetch.get(str(data["output"][0]["url"]), timeout=60) if data.get("output") else None
            if served is None or served.content != path.read_bytes():
                problems.append(f"{owner.label}: {path} is not the complete image")
    fetch.close()
    if stray:
        problems.append(f"unexpected files in the media folder: {stray[:10]}")

    callback_plans = sum(p.uses_callback for p in plans)
    print(f"fast-resume seed {seed}; per task:")
    print("\n".join(rows))
    print(f"callback -> task end (tasks that succeeded): {_figures(after_callback)}")
    print(f"receiver's answers to the {callback_plans} callback tasks' callbacks: {dict(answers)}")
    print(f"remote completion -> task end (polling tasks that succeeded): {_figures(after_completion)}")
    print(f"failed task instances: {len(failed)} of {len(plans)}, {failed_with_file} of them with their file on disk")
    record_property(
        "fast_resume",
        {
            "seed": seed,
            "failed": [p.label for p in failed],
            "callback_to_end_s": [round(v, 2) for v in after_callback],
            "completion_to_end_s": [round(v, 2) for v in after_completion],
            "callback_answers": dict(answers),
        },
    )

    if failed:
        print("".join(_diagnose(deployment, p) for p in failed))
        states = ", ".join(f"{p.label}={p.state}" for p in failed)
        problems.insert(0, f"{len(failed)} of {len(plans)} task instances did not end SUCCESS (seed {seed}): {states}")
    assert not problems, "\n".join(problems)
