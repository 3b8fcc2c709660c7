"""The callback token never reaches the API server's access log: a real ``airflow api-server``, logging as it does.

Airflow 3.1 lets uvicorn write the access log, 3.2 its own middleware; both print the query string as
it came, and only 3.3 masks ``token=``. The plugin redacts the token before either reads it. The
server runs with its own access logging on (nothing here turns it off): the test first waits for the
callback's access line, then looks for the token in everything the server wrote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_aireiter.hooks.aireiter import callback_token
from tests.conftest import conn_json

CONN_ID = "aireiter_logtest"
SECRET = "access-log-test-secret"
OUT_TASK_ID = "job-access-log"
CALLBACK_PATH = f"/aireiter/callback/{CONN_ID}/{OUT_TASK_ID}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: object, timeout: float, what: str, output: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}; server output:\n{output.read_text()[-4000:]}"
    )


@pytest.fixture(scope="module")
def api_server(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``airflow api-server`` on a copy of the session's migrated SQLite DB; yields (base URL, its output)."""
    home = tmp_path_factory.mktemp("access-log-home")
    shutil.copy(Path(airflow_db) / "airflow.db", home / "airflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        **{f"AIRFLOW_CONN_{CONN_ID.upper()}": conn_json("http://127.0.0.1:9", callback_secret=SECRET)},
    )
    port = _free_port()
    output = home / "api-server.out"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow",
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, f"api-server exited with {proc.returncode}:\n{output.read_text()[-4000:]}"
        try:
            return requests.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        _wait_for(healthy, 180, "the api-server to answer", output)
        yield base, output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_callback_token_is_not_in_the_api_servers_access_log(api_server: tuple[str, Path]) -> None:
    base, output = api_server
    valid = callback_token(SECRET, CONN_ID, OUT_TASK_ID)
    forged = "f0" * 32
    accepted = requests.post(f"{base}{CALLBACK_PATH}?token={valid}", json={"status": "success"}, timeout=30)
    rejected = requests.post(f"{base}{CALLBACK_PATH}?token={forged}&x=1", json={}, timeout=30)
    # The receiver read the real token (a valid one is accepted, a forged one is not) ...
    assert accepted.status_code == 202, accepted.text
    assert rejected.status_code == 403, rejected.text

    # ... and the server's access log recorded both requests (on every version, in its own format).
    def both_logged() -> bool:
        return output.read_text(errors="replace").count(CALLBACK_PATH) >= 2

    _wait_for(both_logged, 60, f"two access-log lines for {CALLBACK_PATH}", output)
    written = output.read_text(errors="replace")
    for path in Path(output.parent).rglob("*"):  # and whatever the server wrote elsewhere in its AIRFLOW_HOME
        if path.is_file() and path.suffix in {".log", ".out", ".txt", ""}:
            written += path.read_text(errors="replace")
    assert valid not in written and valid[6:30] not in written
    assert forged not in written
