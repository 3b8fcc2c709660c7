"""Submit now, wait elsewhere: a generation task that does not wait, and a callback sensor that does.

Useful when the waiting should happen in another DAG or after other work. With a public callback base
URL on the connection, AIReiter's completion callback wakes the deferred sensor at once; without one it
polls at ``poke_interval``.
"""

from __future__ import annotations

# [START howto_sensor_aireiter_task]
import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_aireiter.operators.aireiter import Seedance15ProOperator
from airflow_provider_aireiter.sensors.aireiter import AireiterTaskSensor

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")

with DAG(
    dag_id="example_submit_and_sense",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["aireiter", "example"],
) as dag:
    submit = Seedance15ProOperator(
        task_id="submit",
        prompt="Waves rolling onto a black sand beach at sunset, drone shot",
        video_length=5,
        aspect_ratio="9:16",
        resolution="1080p",
        wait_for_completion=False,  # returns {"out_task_id": ..., "status": "pending", ...} right away
    )

    wait = AireiterTaskSensor(
        task_id="wait_for_video",
        out_task_id="{{ ti.xcom_pull(task_ids='submit')['out_task_id'] }}",
        deferrable=True,
        expect_callback=True,  # the submit above sends a callback URL when the connection has callbacks on
        poke_interval=10,
        timeout=60 * 60,
        output_path=f"file://{MEDIA_ROOT}/sensed/{{{{ dag_run.run_after | ds }}}}/",
    )

    submit >> wait
# [END howto_sensor_aireiter_task]
