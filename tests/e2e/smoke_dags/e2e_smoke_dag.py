"""Tiny DAG used by the e2e harness smoke test.

``hello`` is an ordinary Python task (it echoes ``dag_run.conf`` and an environment
variable passed through the harness); ``wait_deferred`` defers itself to the
triggerer (a 12 second ``TimeDeltaTrigger``) and resumes through ``next_method``. Not less: Airflow
3.3 can fail a task resumed within seconds of its deferral (apache/airflow#72716), which is not what
this harness test is about (``test_fast_resume.py`` attacks the provider against that race).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator, task

RESUME_MARKER = "resumed-after-trigger"


class DeferOnceOperator(BaseOperator):
    """Defers once to the triggerer, then finishes in ``resume`` on a worker."""

    def __init__(self, *, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute(self, context: Any) -> None:
        self.log.info("deferring for %s seconds", self.seconds)
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.seconds)), method_name="resume")

    def resume(self, context: Any, event: Any = None) -> dict[str, Any]:
        self.log.info("%s event=%r", RESUME_MARKER, event)
        return {"marker": RESUME_MARKER, "event": str(event)}


with DAG(
    dag_id="e2e_smoke",
    schedule=None,
    catchup=False,
    tags=["e2e"],
) as dag:

    @task
    def hello(**context: Any) -> str:
        who = context["dag_run"].conf.get("who", "nobody")
        # Proves that the harness passes the caller's ``env`` down to task processes.
        passed = os.environ.get("AIREITER_E2E_SMOKE_VALUE", "<unset>")
        print(f"hello from the e2e smoke DAG, who={who} env={passed}")
        return f"hello {who}"

    hello() >> DeferOnceOperator(task_id="wait_deferred", seconds=12)
