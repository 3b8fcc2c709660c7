"""A batch of prompts with dynamic task mapping: one deferred generation per prompt, then a summary.

Uses the generic ``AireiterGenerateOperator``, which takes any model and its params as a dict. Each
mapped task gets its own ``out_task_id`` (the map index is part of it), so a retry of one prompt never
pays for another.
"""

from __future__ import annotations

# [START howto_operator_generate_mapped]
import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aireiter.operators.aireiter import AireiterGenerateOperator

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")

PROMPTS = [
    "A paper boat on a rainy street, macro photo",
    "A bonsai tree on the moon, studio lighting",
    "A cozy reading nook in a treehouse, isometric illustration",
]

with DAG(
    dag_id="example_prompt_batch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["aireiter", "example"],
) as dag:
    generated = AireiterGenerateOperator.partial(
        task_id="generate",
        model="seedream_v5_lite",
        deferrable=True,
        poll_interval=5,
        output_path=f"file://{MEDIA_ROOT}/batch/{{{{ run_id | replace(':', '_') }}}}/",
    ).expand(model_params=[{"prompt": prompt, "aspect_ratio": "1:1"} for prompt in PROMPTS])

    @task
    def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
        """Gather every mapped result: one line per image, and the credits spent in total."""
        files = [output["path"] for result in results for output in result["outputs"]]
        credits = sum(result["credits_used"] or 0 for result in results)
        for path in files:
            print(f"generated {path}")
        return {"files": files, "credits_used": credits}

    # Airflow passes the list of mapped results at run time.
    collect(generated.output)  # type: ignore[arg-type]
# [END howto_operator_generate_mapped]
