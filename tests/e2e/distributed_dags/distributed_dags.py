"""DAGs of the distributed end-to-end test (tests/e2e/test_distributed.py).

* ``distributed_load``: 12 deferrable generations with completion callbacks, images and videos, plain
  and mapped, half on connection ``aireiter_cb_a`` (callbacks to api-server-1), half on
  ``aireiter_cb_b`` (api-server-2), and 4 polling-only controls. Their fallback poll is 10 minutes
  away: a lost wake would leave a task waiting past the test's deadline.
* ``distributed_worker_kill``: one generation whose submit the test holds open at the service while it
  kills the Celery worker that sent it; the retry must reattach.
* ``distributed_pending``: one short generation whose callback arrives while its deferral is still
  settling (held in api-server-2's memory), for the test to restart that api-server.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_aireiter.operators.aireiter import (
    AireiterGenerateOperator,
    Seedance15ProOperator,
    SeedreamV5LiteOperator,
)

START = datetime(2026, 1, 1)
OUTPUT = f"file://{os.environ.get('AIREITER_MEDIA_ROOT', '/tmp/aireiter-media')}/{{{{ dag.dag_id }}}}/"
WAIT: dict[str, Any] = {"deferrable": True, "callback_poll_interval": 600, "output_path": OUTPUT, "poll_interval": 5}

with DAG("distributed_load", schedule=None, start_date=START, catchup=False, max_active_tasks=32):
    for n in range(4):
        conn = "aireiter_cb_a" if n % 2 == 0 else "aireiter_cb_b"
        SeedreamV5LiteOperator(task_id=f"image_{n}", prompt=f"A kite number {n}", aireiter_conn_id=conn, **WAIT)
    for n in range(2):
        conn = "aireiter_cb_a" if n % 2 == 0 else "aireiter_cb_b"
        Seedance15ProOperator(
            task_id=f"video_{n}", prompt=f"Waves number {n}", video_length=5, aireiter_conn_id=conn, **WAIT
        )
    for conn in ("aireiter_cb_a", "aireiter_cb_b"):
        AireiterGenerateOperator.partial(
            task_id=f"mapped_{conn[-1]}", model="seedream_v5_lite", aireiter_conn_id=conn, **WAIT
        ).expand(model_params=[{"prompt": f"A lantern {i} for {conn}"} for i in range(3)])
    for n in range(4):
        SeedreamV5LiteOperator(
            task_id=f"polling_{n}",
            prompt=f"A polled kite number {n}",
            aireiter_conn_id="aireiter_polling",
            deferrable=True,
            poll_interval=5,
            output_path=OUTPUT,
        )

with DAG("distributed_worker_kill", schedule=None, start_date=START, catchup=False):
    SeedreamV5LiteOperator(
        task_id="victim",
        prompt="A kite whose worker dies mid-submit",
        aireiter_conn_id="aireiter_cb_a",
        retries=2,
        retry_delay=timedelta(seconds=2),
        **WAIT,
    )

with DAG("distributed_pending", schedule=None, start_date=START, catchup=False):
    AireiterGenerateOperator(
        task_id="quick",
        model="quick_image_model",  # 3 s in the emulator: its callback comes while the deferral settles
        model_params={"prompt": "A quick sketch"},
        aireiter_conn_id="aireiter_cb_b",
        deferrable=True,
        callback_poll_interval=30,
        output_path=OUTPUT,
    )
