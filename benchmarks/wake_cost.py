"""What one completion callback costs the API server, with 10,000 deferred AIReiter tasks in PostgreSQL.

A private PostgreSQL cluster on loopback (as the end-to-end tests start it) gets a migrated Airflow
metadata database with ``--tasks`` deferred AIReiter task instances, each on its own trigger row
(half with kwargs as a worker's DeferTask stores them, half Fernet-encrypted), made directly in the
database by ``tests/webhook/db_scenario.py``: scheduling 10,000 real tasks would take far longer
than the wake itself. Then, in one process, side by side:

* ``baseline``: what an API-server request that touches one task instance costs in the database:
  a new session reading one ``TaskInstance`` row by its key (as Airflow's task-instance routes do);
* ``wake, first``: the first callback after the API server started: ``wake_waiting_tasks`` finds the
  deferred AIReiter triggers, decrypts all of them once and wakes the one task;
* ``wake, steady``: each later callback (the decrypted kwargs are remembered per trigger row), each
  waking another task, as a stream of callbacks does.

Each figure is wall-clock time of the call (the database is part of the cost) over ``--rounds``
rounds, interleaved with the baseline; the ratio is steady / baseline. Run:
``.venv/bin/python benchmarks/wake_cost.py [--tasks 10000] [--rounds 30]``. About two minutes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def inner(tasks: int, rounds: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    sys.argv = ["db_scenario.py", "unused", str(tasks)]
    import importlib.util

    spec = importlib.util.spec_from_file_location("db_scenario", ROOT / "tests" / "webhook" / "db_scenario.py")
    assert spec is not None and spec.loader is not None
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    setup = scenario.setup_database(tasks)

    def baseline(i: int) -> float:
        started = time.perf_counter()
        with create_session() as session:
            row = session.scalar(
                select(TaskInstance).where(
                    TaskInstance.dag_id == scenario.DAG_ID,
                    TaskInstance.run_id == scenario.RUN_ID,
                    TaskInstance.task_id == "bulk",
                    TaskInstance.map_index == i,
                )
            )
            assert row is not None
        return time.perf_counter() - started

    baseline(0)  # the engine's first connection is not what a request costs
    first = scenario.wake(f"bulk-{tasks - 1}")
    assert first[0] == 1, first
    steady, base = [], []
    for n in range(rounds):
        woken, _statements, seconds, _held = scenario.wake(f"bulk-{n}")
        assert woken == 1
        steady.append(seconds)
        base.append(baseline(tasks - 2 - n))
    return {
        "tasks": tasks,
        "setup_seconds": setup["setup_seconds"],
        "first_seconds": first[2],
        "first_statements": first[1],
        "steady_ms": [s * 1000 for s in steady],
        "baseline_ms": [b * 1000 for b in base],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        result = inner(args.tasks, args.rounds)
        Path(args.inner).write_text(json.dumps(result))
        return

    sys.path.insert(0, str(ROOT))
    from tests.e2e.deployment import PostgresCluster

    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    cluster = PostgresCluster(clean)
    cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="aireiter-wake-cost-") as home:
            out = Path(home) / "result.json"
            env = {
                **clean,
                "AIRFLOW_HOME": home,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.url("psycopg2"),
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
            }
            command = [sys.executable, __file__, "--tasks", str(args.tasks), "--rounds", str(args.rounds)]
            subprocess.run([*command, "--inner", str(out)], env=env, check=True, timeout=1800)
            result = json.loads(out.read_text())
    finally:
        cluster.stop()

    steady = statistics.median(result["steady_ms"])
    base = statistics.median(result["baseline_ms"])
    print(f"Wake cost with {result['tasks']:,} deferred AIReiter tasks in PostgreSQL ({args.rounds} rounds)")
    print(f"  rows made in            {result['setup_seconds']:.1f} s")
    first_ms = result["first_seconds"] * 1000
    print(f"  wake, first callback    {first_ms:8.1f} ms ({result['first_statements']} SQL statements)")
    print(
        f"  wake, steady            {steady:8.1f} ms median (min {min(result['steady_ms']):.1f}, "
        f"max {max(result['steady_ms']):.1f})"
    )
    print(f"  baseline, one TI read   {base:8.1f} ms median")
    print(f"  ratio steady / baseline {steady / base:8.1f}x")
    print(f"  implied: about {1000 / steady:.0f} callbacks per second per API-server thread in steady state")


if __name__ == "__main__":
    main()
