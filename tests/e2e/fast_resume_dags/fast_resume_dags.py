"""DAGs for ``tests/e2e/test_fast_resume.py``: deferred tasks resumed a moment after they defer.

Both DAGs map one deferrable ``SeedreamV5LiteOperator`` over a list of prompts. The emulated
remote tasks take 600 s on their own; the test finishes each one early at a chosen moment, so the
resume comes within a few seconds of the deferral.

* ``fast_resume_callback``: connection ``aireiter_default``, which has callback settings. The
  fallback query comes only after 600 s, far beyond the test: a task that ends within the test was
  woken by its callback.
* ``fast_resume_polling``: connection ``aireiter_polling``, without callback settings. The trigger
  queries every second, so its event fires at most about a second after the remote task finished.

Task counts and the media folder come from the environment the test gives the deployment.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_aireiter.operators.aireiter import SeedreamV5LiteOperator

MEDIA_ROOT = os.environ.get("AIREITER_MEDIA_ROOT", "/tmp/aireiter-media")
CALLBACK_TASKS = int(os.environ.get("AIREITER_FAST_RESUME_CALLBACK_TASKS", "20"))
POLLING_TASKS = int(os.environ.get("AIREITER_FAST_RESUME_POLLING_TASKS", "10"))
START = datetime(2026, 1, 1)

with DAG("fast_resume_callback", schedule=None, start_date=START, catchup=False, max_active_tasks=64):
    SeedreamV5LiteOperator.partial(
        task_id="generate",
        deferrable=True,
        retries=0,  # a retry would hide the failure this DAG is here to expose
        aspect_ratio="16:9",
        callback_poll_interval=600,
        output_path=f"file://{MEDIA_ROOT}/callback/",
    ).expand(prompt=[f"a lighthouse woken by its callback, number {i}" for i in range(CALLBACK_TASKS)])

with DAG("fast_resume_polling", schedule=None, start_date=START, catchup=False, max_active_tasks=64):
    SeedreamV5LiteOperator.partial(
        task_id="generate",
        deferrable=True,
        retries=0,
        aspect_ratio="16:9",
        poll_interval=1,
        aireiter_conn_id="aireiter_polling",
        output_path=f"file://{MEDIA_ROOT}/polling/",
    ).expand(prompt=[f"a lighthouse found by polling, number {i}" for i in range(POLLING_TASKS)])
