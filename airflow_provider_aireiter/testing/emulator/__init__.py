"""Testing your DAGs with the emulator.

A local stand-in for the AIReiter API: a real HTTP server on ``127.0.0.1``
that behaves like the service (quirks included), produces real PNG and MP4
files and spends no credits. Standard library only; importing this package
starts nothing.

Start it::

    python -m airflow_provider_aireiter.testing.emulator --port 8765 --api-key emulator-key --speed 60

It prints its base URL, the key it accepts and the Airflow connection::

    export AIRFLOW_CONN_AIREITER_DEFAULT='{"conn_type": "aireiter",
        "host": "http://127.0.0.1:8765", "password": "emulator-key"}'
    export AIRFLOW_CONN_AIREITER_DEFAULT=aireiter://:emulator-key@http%3A%2F%2F127.0.0.1%3A8765

Options: ``--host`` (127.0.0.1), ``--port`` (8765, 0 = free port),
``--api-key`` (``emulator-key``), ``--speed`` (clock factor: 60 makes a 60 s
task take 1 s), ``--credits`` (10000), ``--duplicate-policy``,
``--hide-task-id``, ``--faults`` (JSON), ``--seed``. Ctrl-C or SIGTERM stops it.

From Python::

    from airflow_provider_aireiter.testing.emulator import Emulator, Fault

    with Emulator(api_key="k", speed=100, port=0) as emu:
        os.environ["AIRFLOW_CONN_AIREITER_DEFAULT"] = emu.conn_json  # or emu.conn_uri
        ...
        emu.submit_count(out_task_id); emu.query_count(out_task_id); emu.requests()
        emu.callbacks(); emu.complete_task(out_task_id, status="failed", error="x")
        emu.balance; emu.reset()

pytest fixtures (plugin :mod:`.pytest_plugin`, registered by the ``pytest11``
entry point): ``aireiter_emulator`` (started on a free port at speed 100) and
``aireiter_connection`` (the same, with ``AIRFLOW_CONN_AIREITER_DEFAULT`` set).
Configure them with ``@pytest.mark.aireiter_emulator(speed=..., credits=...)``.

Faults, per endpoint (``submit``, ``query``, ``balance``, ``media``,
``callback``), scripted or random (see :mod:`.faults` for the kinds)::

    emu.faults.script("submit", ["http_503", None, Fault("http_429", retry_after=2)])
    emu.faults.rate("query", "http_500", 0.2, seed=1)
    emu.faults.clear()

Admin endpoints (no key, never logged): ``GET /_emulator/health``,
``/requests``, ``/submits``, ``/callbacks``, ``/faults``; ``POST`` and
``DELETE /_emulator/faults``; ``GET /_emulator/tasks/<out_task_id>``;
``POST /_emulator/tasks/<out_task_id>/complete``; ``POST /_emulator/balance``;
``POST /_emulator/reset``.

The emulator's documented choices, where the real API is silent:

* 401: a missing or wrong key gets HTTP 401 *and* body ``statusCode`` 401
  (which of the two the real service uses is unconfirmed).
* Reused ``out_task_id``: ``reject`` (default, business 400
  ``out_task_id already exists``), ``return_existing`` or ``create_new``.
* Credits: images 10, ``seedance_1_5_pro``/``veo3_1`` 100, ``veo3_1_base`` 80,
  ``veo3_1_plus`` 120, ``veo3_1_fast`` 60, other videos 100 (see
  :mod:`.catalog`); checked at submit (433), charged at completion, 0 for
  failed tasks.
* Durations: images 3 s pending + 20 s processing, videos 5 s + 90 s of
  emulator time.
* Image size: ``seedream_v5_lite`` long side 2048 (``2K``) or 3072 (``3K``),
  short side by ratio rounded to 8; other images 1024 (see :mod:`.media`).
  Videos are a tiny fixture MP4 whose size does not follow the resolution.
* Callbacks POST the query ``data`` on completion and failure, retried 3 times.
"""

from __future__ import annotations

from .emulator import CONN_ENV_VAR, DEFAULT_API_KEY, Emulator
from .faults import Fault, FaultInjector

__all__ = ["CONN_ENV_VAR", "DEFAULT_API_KEY", "Emulator", "Fault", "FaultInjector"]
