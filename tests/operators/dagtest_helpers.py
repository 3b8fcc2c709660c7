"""Run a DAG for real with ``dag.test()`` against the emulator and read back what it produced."""

from __future__ import annotations

import json
import os
import struct
import textwrap
from pathlib import Path
from typing import Any

from tests.compat import AIRFLOW_VERSION
from tests.conftest import load_dag_file

#: a downstream task that writes an upstream's XCom result to $RESULTS_DIR/<task_id>.json
COLLECT = textwrap.dedent(
    """
    import json as _json, os as _os
    from airflow.sdk import task as _task

    @_task(trigger_rule="all_done")
    def collect(results):
        for task_id, value in results.items():
            with open(_os.path.join(_os.environ["RESULTS_DIR"], task_id + ".json"), "w") as handle:
                _json.dump(value, handle)
    """
)


def dag_source(dag_id: str, body: str, *, imports: str = "", dag_kwargs: str = "") -> str:
    """A DAG file: ``body`` creates tasks; ``collect({...})`` may be called to record results."""
    return (
        "import os\nfrom datetime import datetime, timedelta\nfrom airflow.sdk import DAG\n"
        "from airflow_provider_aireiter.operators.aireiter import *\n"
        "from airflow_provider_aireiter.sensors.aireiter import AireiterTaskSensor\n"
        f"{imports}\n{COLLECT}\n"
        f"with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False{dag_kwargs}) as dag:\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )


def run_dag(
    dag_id: str, body: str, results_dir: Path, *, dag_kwargs: str = "", **test_kwargs: Any
) -> tuple[str, dict[str, Any]]:
    """Write, load and ``dag.test()`` a DAG; return the run state and the collected results by task id."""
    os.environ["RESULTS_DIR"] = str(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    dag: Any = load_dag_file(dag_source(dag_id, body, dag_kwargs=dag_kwargs), dag_id, dag_id)
    run = dag.test(**test_kwargs)
    collected = {p.stem: json.loads(p.read_text()) for p in results_dir.glob("*.json")}
    return str(run.state), collected


def png_size(path: str) -> tuple[int, int]:
    data = Path(path.removeprefix("file://")).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def is_mp4(path: str) -> bool:
    data = Path(path.removeprefix("file://")).read_bytes()
    return data[4:8] == b"ftyp"


def submit_bodies(emu: Any) -> list[dict[str, Any]]:
    return [r["body"] for r in emu.requests() if r["path"].endswith("/submit")]


def dumps(value: Any) -> str:
    return json.dumps(value)


def task_state(dag_id: str, key: str = "aireiter") -> dict[str, Any]:
    """``key`` of the task state store of each task of the DAG's runs (Airflow 3.3), read through Airflow's model."""
    if AIRFLOW_VERSION < (3, 3):
        return {}
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskStateStoreModel.task_id, TaskStateStoreModel.value).where(
                TaskStateStoreModel.dag_id == dag_id, TaskStateStoreModel.key == key
            )
        ).all()
    return {row.task_id: json.loads(row.value) for row in rows}


#: the keys of the result dict every generation returns (the README documents it)
RESULT_KEYS = {
    "out_task_id",
    "task_id",
    "model",
    "status",
    "credits_used",
    "estimated_credits",
    "created_at",
    "completed_at",
    "outputs",
}
