"""The examples and the callbacks on a real deployment: PostgreSQL, api-server, scheduler, dag-processor,
triggerer as separate processes, LocalExecutor, the emulator as AIReiter, DAGs triggered through the REST API.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.e2e.deployment import AirflowDeployment, Connection, Setup, epoch

ROOT = Path(__file__).resolve().parents[2]
# The review example waits for a person; tests/e2e/test_media_view.py runs it, answering through the REST API.
EXAMPLES = sorted(p for p in (ROOT / "example_dags").glob("example_*.py") if p.stem != "example_review_before_publish")
CALLBACK_DAGS = Path(__file__).parent / "callback_dags" / "callback_dags.py"

SETUP = Setup(
    name="e2e",
    dag_files=[*EXAMPLES, CALLBACK_DAGS],
    # A video takes 2 + 8 s: long enough to defer, short enough for the test. create_new: a second submit
    # of an out_task_id would be a second, paid task, so "paid once" is a real check.
    emulator={"durations": {"*": (2.0, 8.0)}, "credits": 100_000, "duplicate_policy": "create_new"},
    connections={
        "aireiter_default": Connection(callbacks_to=0, extra={"callback_secret": "e2e-callback-signing-secret"}),
        "aireiter_polling": Connection(),
    },
)


def test_every_example_dag_succeeds(deployment: AirflowDeployment, media: Path, emulator: Emulator) -> None:
    dag_ids = [path.stem for path in EXAMPLES]
    # As the UI's trigger form does, give the manual runs a logical date (the daily example uses {{ ds }}).
    now = datetime.now(timezone.utc).isoformat()
    runs = {dag_id: deployment.trigger(dag_id, logical_date=now) for dag_id in dag_ids}
    for dag_id, run_id in runs.items():
        assert deployment.wait_for_run(dag_id, run_id, timeout=300) == "success"
    outputs: list[str] = []
    for dag_id, run_id in runs.items():
        for value in deployment.results(dag_id, run_id).values():
            if isinstance(value, dict) and value.get("outputs"):
                outputs += [o["path"].removeprefix("file://") for o in value["outputs"]]
    kinds = sorted(
        "png" if Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" else Path(p).read_bytes()[4:8].decode()
        for p in outputs
    )
    # images: daily 1, image-to-video 1, batch 3; videos: seedance 1, veo 1, sensed 1
    assert kinds == ["ftyp"] * 3 + ["png"] * 5, outputs
    assert all(Path(p).stat().st_size > 1000 and str(media) in p for p in outputs)
    # The deferrable ones went through the real triggerer.
    seedance = deployment.task_instance(
        "example_seedance_text_to_video", runs["example_seedance_text_to_video"], "kitten_video"
    )
    assert seedance["state"] == "success" and seedance["try_number"] == 1
    log = deployment.task_log("example_seedance_text_to_video", runs["example_seedance_text_to_video"], "kitten_video")
    # It waited in the triggerer and was resumed there: by its completion callback or by its trigger's event.
    resumed_by_callback = "Woken by the completion callback after" in log
    assert resumed_by_callback or re.search(r"(?i)trigger fired event", log), log[-3000:]
    # Nothing was paid twice: one task created per out_task_id.
    assert emulator.submits() and all(count == 1 for count in emulator.submits().values()), emulator.submits()


def test_callback_wakes_sensor_and_operator_while_polling_waits(
    deployment: AirflowDeployment, emulator: Emulator, record_property: Any
) -> None:
    runs = {dag_id: deployment.trigger(dag_id) for dag_id in ("cb_sensor", "poll_sensor", "cb_operator")}
    for dag_id, run_id in runs.items():
        assert deployment.wait_for_run(dag_id, run_id, timeout=240) == "success"

    def out_task_id(dag_id: str, task_id: str) -> str:
        value = deployment.xcom(dag_id, runs[dag_id], task_id)
        return str(value["out_task_id"])

    ids = {
        "cb_sensor": out_task_id("cb_sensor", "submit"),
        "poll_sensor": out_task_id("poll_sensor", "submit"),
        "cb_operator": out_task_id("cb_operator", "generate"),
    }
    delivered = {
        r["out_task_id"]: r["time"] for r in emulator.callbacks() if r.get("delivered") or r.get("status_code") == 202
    }
    figures: dict[str, Any] = {}
    for name, task_id in (("cb_sensor", "wait"), ("cb_operator", "generate"), ("poll_sensor", "wait")):
        ti = deployment.task_instance(name, runs[name], task_id)
        task = emulator.task(ids[name])
        assert task is not None
        completed = epoch(task["completed_at"])
        end = epoch(ti["end_date"])
        figures[name] = {
            "after_completion_s": round(end - completed, 2),
            "after_callback_s": round(end - delivered[ids[name]], 2) if ids[name] in delivered else None,
            "queries": emulator.query_count(ids[name]),
        }
    record_property("callback_figures", figures)
    print("callback figures:", json.dumps(figures))
    # No callback URL was sent for the polling-only connection.
    assert ids["poll_sensor"] not in delivered
    # Woken by the callback, not by a fallback poll: a fallback poll would be a fifth query (the figures
    # in seconds are printed for the README; how long the hold takes is not what is tested here).
    for name in ("cb_sensor", "cb_operator"):
        assert figures[name]["after_callback_s"] is not None, figures
        assert figures[name]["queries"] <= 4, figures
    # Polling only: it waited for its next poll (every 30 s) after the task completed.
    assert figures["poll_sensor"]["after_completion_s"] > 5.0, figures
