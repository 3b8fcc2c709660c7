"""Image to video: a Seedream still becomes the first frame of a Veo 3.1 clip.

The flagship example (``make demo`` runs it). The image task returns a small dict to XCom; its first
output URL is templated into the video task's ``image_url``.
"""

from __future__ import annotations

# [START howto_operator_veo3_1_image_to_video]
import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_aireiter.operators.aireiter import SeedreamV5LiteOperator, Veo31Operator

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")
OUTPUT = f"file://{MEDIA_ROOT}/image_to_video/{{{{ dag_run.run_after | ds }}}}/"

with DAG(
    dag_id="example_image_to_video",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["aireiter", "example"],
) as dag:
    first_frame = SeedreamV5LiteOperator(
        task_id="first_frame",
        prompt="An orange tabby cat sitting on the windowsill, Tokyo night view outside, cyberpunk style",
        aspect_ratio="16:9",
        resolution="2K",
        output_path=OUTPUT,
    )

    animate = Veo31Operator(
        task_id="animate",
        prompt="The cat turns its head and the city lights flicker",
        # The result dict of first_frame: {"outputs": [{"url": ..., "path": ...}], ...}
        image_url="{{ ti.xcom_pull(task_ids='first_frame')['outputs'][0]['url'] }}",
        aspect_ratio="16:9",
        channel="plus",  # veo3_1_plus: a steadier service tier, same model
        deferrable=True,
        output_path=OUTPUT,
    )

    # A template that pulls XCom does not order tasks by itself: say it.
    first_frame >> animate
# [END howto_operator_veo3_1_image_to_video]
