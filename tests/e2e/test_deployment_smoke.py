"""Smoke tests for the e2e harness itself (tests/e2e/deployment.py).

The failure/cleanup tests come first so that they do not compete for CPU with the
module-scoped smoke deployment; ``test_teardown_leaves_no_process_behind`` must stay
the last test of the module (it stops the shared deployment).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.deployment import (
    AirflowDeployment,
    DagRunFailed,
    DeploymentError,
    DeploymentFactory,
    DeploymentStartupError,
    descendants,
    find_processes,
)

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
SMOKE_DAGS_DIR = E2E_DIR / "smoke_dags"
DAG_ID = "e2e_smoke"
SMOKE_ENV_VALUE = "passed-through-by-the-harness"


def _wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _postgres_pids(pg_root: str) -> list[int]:
    return find_processes([pg_root]) if pg_root else []


# --------------------------------------------------------------------------- startup failures


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        pytest.param(
            "component-crash",
            {
                "component_commands": {
                    "triggerer": [
                        sys.executable,
                        "-c",
                        "import sys; print('simulated triggerer crash', flush=True); sys.exit(3)",
                    ]
                }
            },
            r"triggerer exited with code 3(?s:.*)simulated triggerer crash",
            id="component-crash",
        ),
        pytest.param(
            "bad-db",
            {"env": {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody:x@127.0.0.1:9/none"}},
            r"`airflow db migrate` failed",
            id="bad-db",
        ),
    ],
)
def test_startup_failure_raises_clear_error_and_cleans_up(
    case: str, kwargs: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    dep = AirflowDeployment(SMOKE_DAGS_DIR, workdir=tmp_path / case, startup_timeout=120, **kwargs)
    with pytest.raises(DeploymentStartupError, match=expected) as excinfo:
        dep.start()
    # The message carries a log tail, so CI output alone is enough to diagnose it.
    assert len(str(excinfo.value).splitlines()) > 2
    assert dep.leftover_processes() == []
    assert dep.postgres is not None
    assert not dep.postgres.root.exists()
    assert (dep.logs_dir / "postgres.log").exists()
    dep.stop()  # idempotent


_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.e2e.deployment import AirflowDeployment
dep = AirflowDeployment(sys.argv[2], workdir=sys.argv[3], startup_timeout=120)
print("MARKER", dep.marker, flush=True)
with dep:
    print("READY", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_during_startup_leaves_nothing_behind(sig: signal.Signals, tmp_path: Path) -> None:
    """Kill the test process while the Airflow components are starting up."""
    workdir = tmp_path / "wd"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(E2E_DIR.parents[1]), str(SMOKE_DAGS_DIR), str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline().split()
        assert first[:1] == ["MARKER"], first
        marker = first[1]
        # Wait until the components have been spawned (their logs exist), then strike.
        _wait_until(lambda: (workdir / "logs" / "triggerer.log").exists(), 90, "components to be spawned")
        time.sleep(1.0)
        assert find_processes([marker]), "expected Airflow processes to be running"
        child.send_signal(sig)
        child.wait(timeout=90)
        output = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    if sig == signal.SIGKILL:
        reaper_log = workdir / "logs" / "reaper.log"
        _wait_until(lambda: "[reaper] done" in reaper_log.read_text(), 90, "the reaper to finish")
        match = re.search(r"pg_root=(\S+)", reaper_log.read_text())
        pg_root = match.group(1) if match else ""
    else:
        assert child.returncode == -sig, output
        pg_root = ""
    _wait_until(lambda: not find_processes([marker, str(workdir)], [str(workdir)]), 30, "processes to disappear")
    if pg_root:
        assert not _postgres_pids(pg_root)
        assert not Path(pg_root).exists()
    postgres_log = workdir / "logs" / "postgres.log"
    if sig != signal.SIGKILL:
        assert postgres_log.exists(), output


# --------------------------------------------------------------------------- the smoke deployment


@pytest.fixture(scope="module")
def smoke(airflow_deployment_factory: DeploymentFactory) -> AirflowDeployment:
    return airflow_deployment_factory(SMOKE_DAGS_DIR, env={"AIREITER_E2E_SMOKE_VALUE": SMOKE_ENV_VALUE})


def test_deployment_is_healthy(smoke: AirflowDeployment) -> None:
    assert smoke.api_url.startswith("http://127.0.0.1:")
    health = smoke.health()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    for component in ("api-server", "scheduler", "dag-processor", "triggerer", "db-migrate"):
        assert (smoke.logs_dir / f"{component}.log").stat().st_size > 0
    version = smoke.api("GET", "/api/v2/version")
    assert version["version"].startswith("3.")
    # The metadata DB is the private PostgreSQL cluster, not sqlite / the system cluster.
    assert smoke.database_url.startswith("postgresql+psycopg2://")
    assert ":5432/" not in smoke.database_url
    # Loopback only.
    assert requests.get(f"{smoke.api_url}/api/v2/monitor/health", timeout=10).status_code == 200


def test_dag_run_with_deferrable_task(smoke: AirflowDeployment) -> None:
    started = time.monotonic()
    run_id = smoke.trigger(DAG_ID, conf={"who": "e2e"})
    assert smoke.wait_for_run(DAG_ID, run_id, timeout=180) == "success"
    elapsed = time.monotonic() - started

    tis = {ti["task_id"]: ti for ti in smoke.task_instances(DAG_ID, run_id)}
    assert {k: v["state"] for k, v in tis.items()} == {"hello": "success", "wait_deferred": "success"}

    hello_log = smoke.task_log(DAG_ID, run_id, "hello")
    assert "who=e2e" in hello_log
    assert f"env={SMOKE_ENV_VALUE}" in hello_log
    assert smoke.xcom(DAG_ID, run_id, "hello") == "hello e2e"

    # The deferrable task went through the triggerer and resumed via next_method:
    # the resume method only runs after a trigger event, and its return value carries
    # the event payload produced by the trigger (a datetime).
    result = smoke.xcom(DAG_ID, run_id, "wait_deferred")
    assert result["marker"] == "resumed-after-trigger", result
    datetime.fromisoformat(result["event"])
    wait_log = smoke.task_log(DAG_ID, run_id, "wait_deferred")
    assert "deferring for 12 seconds" in wait_log
    assert "resumed-after-trigger" in wait_log
    assert re.search(r"(?i)trigger fired event", wait_log), wait_log  # written by the triggerer
    assert tis["wait_deferred"]["duration"] >= 12.0
    print(f"\nsmoke DAG run took {elapsed:.1f}s (trigger -> success)")


def test_failed_run_reports_task_states_and_logs(smoke: AirflowDeployment) -> None:
    run_id = smoke.trigger("e2e_smoke_fail")
    with pytest.raises(DagRunFailed) as excinfo:
        smoke.wait_for_run("e2e_smoke_fail", run_id, timeout=180)
    message = str(excinfo.value)
    assert excinfo.value.state == "failed"
    assert "explode: failed" in message
    assert "boom-e2e: this failure is intentional" in message  # the task log is included
    assert smoke.wait_for_run("e2e_smoke_fail", run_id, raise_on_failure=False) == "failed"


def test_unknown_dag_gives_clear_error(smoke: AirflowDeployment) -> None:
    with pytest.raises(DeploymentError, match="did not appear within"):
        smoke.trigger("no_such_dag", parse_timeout=2)


def test_teardown_leaves_no_process_behind(smoke: AirflowDeployment) -> None:
    # Leave a task running: its task runner sits in its own process group.
    run_id = smoke.trigger("e2e_smoke_sleepy")
    _wait_until(
        lambda: [ti["state"] for ti in smoke.task_instances("e2e_smoke_sleepy", run_id)] == ["running"],
        120,
        "the sleepy task to run",
        interval=1.0,
    )
    _wait_until(lambda: "napping" in smoke.task_log("e2e_smoke_sleepy", run_id, "nap"), 60, "task output")
    before = smoke.leftover_processes()
    component_pids = {p.pid for p in smoke.processes.values()}
    tree = descendants(component_pids)
    own_group = [p for p in tree if os.getpgid(p) not in component_pids]
    assert own_group, "expected a task runner outside the components' process groups"
    assert len(before) >= 5, before
    assert smoke.postgres is not None
    pg_root = str(smoke.postgres.root)
    assert _postgres_pids(pg_root)
    api_port = smoke.api_port

    started = time.monotonic()
    smoke.stop()
    elapsed = time.monotonic() - started
    print(f"\nteardown with a running task took {elapsed:.1f}s")

    assert smoke.leftover_processes() == []
    assert not any(Path(f"/proc/{p}").exists() and _alive(p) for p in tree | set(before))
    assert not _postgres_pids(pg_root)
    assert not Path(pg_root).exists()
    # Nothing left whose environment or command line mentions the workdir or marker.
    assert not find_processes([str(smoke.workdir), smoke.marker], [str(smoke.workdir)])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=5)
    assert elapsed < 40


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False
