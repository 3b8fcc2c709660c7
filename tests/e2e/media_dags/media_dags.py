"""DAGs for the media view tests: an image, a video, a mapped batch, an output not stored, a non-AIReiter
task (the empty state) and a forged result dict pointing at a file the provider never wrote."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aireiter.operators.aireiter import (
    AireiterGenerateOperator,
    Seedance15ProOperator,
    SeedreamV5LiteOperator,
)

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")
OUTPUT = f"file://{MEDIA_ROOT}/media_view/{{{{ run_id | replace(':', '_') }}}}/"

with DAG(dag_id="media_view", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    SeedreamV5LiteOperator(
        task_id="still", prompt="A lighthouse at dawn, watercolor", aspect_ratio="16:9", output_path=OUTPUT
    )
    Seedance15ProOperator(task_id="clip", prompt="Waves rolling in at dusk", video_length=5, output_path=OUTPUT)
    AireiterGenerateOperator.partial(task_id="batch", model="seedream_v5_lite", output_path=OUTPUT).expand(
        model_params=[{"prompt": "A red kite"}, {"prompt": "A blue kite"}]
    )
    SeedreamV5LiteOperator(task_id="not_stored", prompt="A green kite")

    @task
    def plain() -> dict[str, Any]:
        return {"rows": 3}

    @task
    def forged() -> dict[str, Any]:
        # Shaped like the provider's result, but the "output" is a file of the API server's machine.
        return {
            "out_task_id": "forged",
            "model": "seedream_v5_lite",
            "outputs": [{"url": None, "path": "file:///etc/passwd", "content_type": "image/png", "size": 1}],
        }

    plain()
    forged()
