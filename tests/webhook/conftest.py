"""Fixtures for the callback receiver: a real uvicorn server on 127.0.0.1 and real Airflow connections.

The connections are env-var connections (``AIRFLOW_CONN_<ID>``), found by Airflow's secrets backends
before the metadata database is ever consulted, so these tests never touch ``~/airflow``. Waking is
recorded by a small in-memory waker; the real, database-backed waking is tested in a subprocess with
its own ``AIRFLOW_HOME`` (``test_callback_wake_db.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.webhook.helpers import (
    CONN_ID,
    NO_SECRET_CONN_ID,
    SECRET,
    Receiver,
    callback_conn_json,
    start_receiver,
)


@pytest.fixture
def callback_conns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        callback_conn_json(callback_secret=SECRET, callback_base_url="http://127.0.0.1:9"),
    )
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{NO_SECRET_CONN_ID.upper()}", callback_conn_json(callback_base_url="http://127.0.0.1:9")
    )


@pytest.fixture
def receiver(callback_conns: None) -> Iterator[Receiver]:
    server, waker, lookup = start_receiver()
    with server:
        yield Receiver(server, waker, lookup)
