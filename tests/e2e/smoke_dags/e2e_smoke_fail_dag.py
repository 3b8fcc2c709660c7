"""DAG whose only task fails: exercises the harness' failure diagnostics."""

from __future__ import annotations

from airflow.sdk import DAG, task

with DAG(dag_id="e2e_smoke_fail", schedule=None, catchup=False, tags=["e2e"]) as dag:

    @task(retries=0)
    def explode() -> None:
        raise RuntimeError("boom-e2e: this failure is intentional")

    explode()
