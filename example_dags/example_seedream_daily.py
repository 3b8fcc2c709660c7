"""A daily image: Seedream 5.0 Lite draws today's postcard and stores it under a folder per date.

Copy this file into your DAGs folder. It needs an ``aireiter_default`` connection (see the README) and
writes under ``$AIREITER_MEDIA_ROOT`` (default ``/tmp/aireiter-media``); any ObjectStoragePath URI
works as ``output_path``, e.g. ``s3://my-bucket/postcards/{{ ds }}/`` with the Amazon provider.
"""

from __future__ import annotations

# [START howto_operator_seedream_v5_lite]
import os
from datetime import datetime

from airflow.sdk import DAG, Asset

from airflow_provider_aireiter.operators.aireiter import SeedreamV5LiteOperator

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")

# Downstream DAGs can be scheduled on this asset; each event's extra lists the new files.
DAILY_POSTCARDS = Asset(name="aireiter_daily_postcards", uri=f"file://{MEDIA_ROOT}/postcards")

with DAG(
    dag_id="example_seedream_daily",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["aireiter", "example"],
) as dag:
    SeedreamV5LiteOperator(
        task_id="daily_postcard",
        # Jinja is rendered before the params are validated and sent.
        prompt="A watercolor postcard of a lighthouse at dawn, dated {{ ds }}, soft pastel colours",
        aspect_ratio="16:9",
        resolution="2K",
        web_search=False,
        # One folder per run date; files are named <out_task_id>_<n>.<ext>.
        output_path=f"file://{MEDIA_ROOT}/postcards/{{{{ ds }}}}/",
        outlets=[DAILY_POSTCARDS],
    )
# [END howto_operator_seedream_v5_lite]
