"""Text to video with Seedance 1.5 Pro, waiting in the triggerer instead of on a worker.

A video takes minutes; ``deferrable=True`` frees the worker slot while AIReiter renders.
"""

from __future__ import annotations

# [START howto_operator_seedance_1_5_pro_deferrable]
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_aireiter.operators.aireiter import Seedance15ProOperator

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")

with DAG(
    dag_id="example_seedance_text_to_video",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["aireiter", "example"],
) as dag:
    Seedance15ProOperator(
        task_id="kitten_video",
        prompt="A cute kitten playing under the sunlight, fluffy fur, bright eyes",
        video_length=5,
        aspect_ratio="16:9",
        resolution="720p",
        deferrable=True,
        poll_interval=10,
        timeout=timedelta(minutes=30),
        output_path=f"file://{MEDIA_ROOT}/videos/{{{{ dag_run.run_after | ds }}}}/",
    )
# [END howto_operator_seedance_1_5_pro_deferrable]
