"""Fixtures shared by the test suite. Servers are real (emulator or scripted), bound to 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_provider_aireiter.retry import RetryPolicy
from tests.scripted_server import ScriptedServer

API_KEY = "test-key-0123456789"

#: fast retries for tests (the policy's logic is the same; only the waits are shorter)
FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=0.2)


def conn_json(base_url: str, api_key: str = API_KEY, **extra: object) -> str:
    return json.dumps({"conn_type": "aireiter", "host": base_url, "password": api_key, "extra": extra})


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """A scripted server, with ``aireiter_default`` pointing at it."""
    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(server.base_url, timeout=5))
        yield server
