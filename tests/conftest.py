"""Fixtures shared by the test suite. Servers are real (emulator or scripted), bound to 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

# Airflow reads its configuration when first imported: give the whole run its own AIRFLOW_HOME
# (an SQLite metadata DB for dag.test()) before anything imports airflow.
_HOME = tempfile.mkdtemp(prefix="aireiter-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(_HOME, "dags"))
# dag.test() has no scheduler, so no scheduler race: no need to hold resumes (the real deployment of
# tests/e2e drops every AIRFLOW* variable and runs with the default hold).
os.environ.setdefault("AIRFLOW__AIREITER__RESUME_SETTLE_SECONDS", "0")

import pytest  # noqa: E402

#: the emulator's fixtures (opt-in: the package registers no pytest plugin of its own)
pytest_plugins = ["airflow_provider_aireiter.testing.emulator.pytest_plugin"]

from airflow_provider_aireiter.retry import AireiterRetryPolicy  # noqa: E402
from tests.scripted_server import ScriptedServer  # noqa: E402

API_KEY = "test-key-0123456789"

#: fast retries for tests (the policy's logic is the same; only the waits are shorter)
FAST_RETRIES = AireiterRetryPolicy(
    max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=0.2, recheck_delay=0.01, recheck_budget=0.3
)


def conn_json(base_url: str, api_key: str = API_KEY, **extra: object) -> str:
    return json.dumps({"conn_type": "aireiter", "host": base_url, "password": api_key, "extra": extra})


def use_connection(monkeypatch: pytest.MonkeyPatch, emu: Any, api_key: str | None = None, **extra: object) -> None:
    """``aireiter_default`` pointing at the emulator ``emu`` (its API key unless ``api_key``), with these extras."""
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(emu.base_url, api_key or emu.api_key, **extra))


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """A scripted server, with ``aireiter_default`` pointing at it."""
    with ScriptedServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(server.base_url, timeout=5))
        yield server


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB in this run's AIRFLOW_HOME (what ``dag.test()`` needs)."""
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return _HOME


DAGS_FOLDER = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]


def load_dag_file(source: str, name: str, dag_id: str) -> object:
    """Write a DAG file into this run's DAGs folder and import it (``dag.test()`` needs the DAG in a bundle)."""
    import importlib.util

    os.makedirs(DAGS_FOLDER, exist_ok=True)
    path = os.path.join(DAGS_FOLDER, f"{name}.py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(f"aireiter_test_dag_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = [v for v in vars(module).values() if getattr(v, "dag_id", None) == dag_id and hasattr(v, "test")]
    assert dags, f"{path} defines no DAG {dag_id!r}"
    return dags[0]


@pytest.fixture
def logs(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Any:
    """Everything logged so far: Airflow logs to stdout (structlog) or to the logging module, by component."""

    def read() -> str:
        return "".join(capfd.readouterr()) + caplog.text

    return read


@pytest.fixture(autouse=True)
def no_thread_outlives_its_test() -> Iterator[None]:
    """A provider thread started by a test (the pending-callback retries) is stopped by its owner."""
    import threading
    import time

    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 2
    while True:
        left = [
            t.name
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and t.name == "aireiter-pending-wakes"
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"threads outlived the test that started them: {left}"


#: one StatsD line: name:value|type (Airflow's statsd_prefix "airflow" first)
STATSD_LINE = re.compile(r"^(?P<name>[^:]+):(?P<value>-?[0-9.]+)\|(?P<type>c|ms|g)$")


class StatsdListener:
    """A StatsD server: a UDP socket on 127.0.0.1 whose thread keeps every line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-statsd-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def env(self) -> dict[str, str]:
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
        }

    def ours(self) -> list[tuple[str, float, str]]:
        """(name without Airflow's prefix, value, type) of every provider metric received."""
        found = []
        for line in self.lines:
            match = STATSD_LINE.match(line)
            assert match is not None, f"not a StatsD line: {line!r}"
            if match["name"].startswith("airflow.aireiter."):
                found.append((match["name"].removeprefix("airflow."), float(match["value"]), match["type"]))
        return found
