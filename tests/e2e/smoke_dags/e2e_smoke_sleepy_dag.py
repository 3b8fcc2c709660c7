"""DAG with a task that is still running when the deployment is torn down.

Used to check that teardown also kills task runners, which Airflow puts into their
own process group (so they escape a plain process-group kill of the scheduler).
"""

from __future__ import annotations

import time

from airflow.sdk import DAG, task

with DAG(dag_id="e2e_smoke_sleepy", schedule=None, catchup=False, tags=["e2e"]) as dag:

    @task
    def nap() -> None:
        print("napping; teardown is expected to kill me", flush=True)
        time.sleep(3600)

    nap()
