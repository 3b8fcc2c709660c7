"""DAGs for the callback end-to-end test: woken by AIReiter's callback vs. polling only.

``aireiter_default`` has callback settings (callbacks on); ``aireiter_polling`` points at the same
service without them. With callbacks on, the fallback query interval is 600 s: only a callback can
finish these tasks within the test's time.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_aireiter.operators.aireiter import Seedance15ProOperator
from airflow_provider_aireiter.sensors.aireiter import AireiterTaskSensor

START = datetime(2026, 1, 1)
PULL = "{{ ti.xcom_pull(task_ids='submit')['out_task_id'] }}"

with DAG("cb_sensor", schedule=None, start_date=START, catchup=False):
    submit = Seedance15ProOperator(task_id="submit", prompt="woken by a callback", wait_for_completion=False)
    submit >> AireiterTaskSensor(
        task_id="wait",
        out_task_id=PULL,
        deferrable=True,
        poke_interval=5,
        expect_callback=True,
        callback_poll_interval=600,
        timeout=600,
    )

with DAG("poll_sensor", schedule=None, start_date=START, catchup=False):
    submit = Seedance15ProOperator(
        task_id="submit", prompt="polling only", wait_for_completion=False, aireiter_conn_id="aireiter_polling"
    )
    submit >> AireiterTaskSensor(
        task_id="wait",
        out_task_id=PULL,
        deferrable=True,
        poke_interval=30,
        timeout=600,
        aireiter_conn_id="aireiter_polling",
    )

with DAG("cb_operator", schedule=None, start_date=START, catchup=False):
    Seedance15ProOperator(
        task_id="generate",
        prompt="operator woken by a callback",
        deferrable=True,
        poll_interval=5,
        callback_poll_interval=600,
    )
