"""A service outage in the middle of a wait, for all four waits, with ``retries=0``.

The outage is real: the emulator answers every query with HTTP 502 for 45 s, starting a few seconds
into the wait (once the wait is polling), and the remote task completes inside the outage. A wait
must ride it out and finish after the outage with one submit; an outage that lasts past the wait's
deadline must end as a timeout, not as an error. These tests take about a minute each.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.operators.dagtest_helpers import run_dag, submit_bodies

pytestmark = pytest.mark.usefixtures("airflow_db")

#: how long the service is away (the issue that found the bug used 45 s; 0.2.0 gave up after ~10 s)
OUTAGE_SECONDS = 45.0
#: the remote task completes this long into the outage
COMPLETES_AFTER = 10.0

# Each wait polls every 2 s; the remote task runs until the test completes it.
WAITS = {
    "sync": 'SeedreamV5LiteOperator(task_id="wait", prompt="kite", out_task_id={id!r}, poll_interval=2, '
    "deferrable=False, retries=0, timeout={timeout})",
    "deferred": 'SeedreamV5LiteOperator(task_id="wait", prompt="kite", out_task_id={id!r}, poll_interval=2, '
    "deferrable=True, retries=0, timeout={timeout})",
    "sensor_poke": 'AireiterTaskSensor(task_id="wait", out_task_id={id!r}, poke_interval=2, mode="poke", '
    "retries=0, timeout={timeout})",
    "sensor_deferred": 'AireiterTaskSensor(task_id="wait", out_task_id={id!r}, poke_interval=2, deferrable=True, '
    "retries=0, timeout={timeout})",
}


@dataclass
class Outage:
    """Starts an outage of the query endpoint once the wait is polling; completes the task inside it."""

    emu: Emulator
    out_task_id: str
    seconds: float
    complete_after: float | None
    started: float | None = None
    ended: float | None = None
    completed: float | None = None
    _thread: threading.Thread = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # "A few seconds into the wait": once the service has answered three queries for the task.
        while self.emu.query_count(self.out_task_id) < 3:
            if self._stop.wait(0.05):
                return
        self.emu.faults.rate("query", "http_502", 1.0)
        self.started = time.time()
        if self.complete_after is not None and not self._stop.wait(self.complete_after):
            self.emu.complete_task(self.out_task_id)
            self.completed = time.time()
        if not self._stop.wait(max(0.0, self.started + self.seconds - time.time())):
            self.emu.faults.clear("query")
            self.ended = time.time()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.emu.faults.clear("query")

    def queries(self) -> list[dict[str, Any]]:
        return [
            r
            for r in self.emu.requests()
            if r["path"].endswith("/query")
            and isinstance(r["body"], dict)
            and r["body"].get("out_task_id") == self.out_task_id
        ]


def _run_wait(
    tmp_path: Path, kind: str, out_task_id: str, outage: Outage, timeout: float = 600, *, collect: bool = True
) -> tuple[str, dict[str, Any]]:
    """Run one wait in a DAG (with a downstream task collecting its result, unless ``collect=False``:
    then the run's state is the wait's)."""
    if kind.startswith("sensor"):
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook

        AireiterHook().submit("seedream_v5_lite", {"prompt": "kite"}, out_task_id)  # submitted elsewhere
    body = f"wait = {WAITS[kind].format(id=out_task_id, timeout=timeout)}\n"
    if collect:
        body += "collect({'wait': wait.output})\n"
    try:
        return run_dag(f"outage_{kind}_{int(timeout)}", body, tmp_path)
    finally:
        outage.stop()


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.0, 3600.0)})
@pytest.mark.parametrize("kind", list(WAITS))
def test_a_wait_rides_out_a_45_s_outage(aireiter_connection: Emulator, tmp_path: Path, logs: Any, kind: str) -> None:
    emu = aireiter_connection
    out_task_id = f"outage-{kind.replace('_', '-')}"
    outage = Outage(emu, out_task_id, OUTAGE_SECONDS, COMPLETES_AFTER)
    state, results = _run_wait(tmp_path, kind, out_task_id, outage)
    text = logs()

    # The outage happened as meant: it began while the task was running, the task completed inside
    # it, and it lasted its whole length.
    assert outage.started is not None and outage.completed is not None and outage.ended is not None
    assert outage.ended - outage.started >= OUTAGE_SECONDS
    during = [q for q in outage.queries() if outage.started <= q["time"] < outage.ended]
    failed = [f for f in emu.faults.injected() if f["endpoint"] == "query" and f["kind"] == "http_502"]
    assert len(failed) >= 6, f"only {len(failed)} queries met the outage"  # 0.2.0 gave up after 5
    assert len(during) == len(failed)

    # The wait lived through it: success after the outage, from the completed task, one submit.
    assert state == "success", text[-4000:]
    assert results["wait"]["status"] == "completed" and results["wait"]["outputs"]
    assert [q for q in outage.queries() if q["time"] >= outage.ended], "the wait did not ask again after the outage"
    assert emu.submit_count(out_task_id) == 1
    assert len(submit_bodies(emu)) == 1

    # Told in the log: the first failure and no flood (at most one warning a minute), then the recovery.
    warnings = text.count("AIReiter has not answered for")
    assert 1 <= warnings <= 2, f"{warnings} outage warnings"
    assert "again after" in text
    after = min(q["time"] for q in outage.queries() if q["time"] >= outage.ended) - outage.ended
    print(
        f"\noutage [{kind}]: {outage.ended - outage.started:.1f} s of HTTP 502, {len(failed)} failed queries, "
        f"task completed {outage.completed - outage.started:.1f} s in, first query after it {after:.1f} s later, "
        f"{warnings} warning(s), state {state}, {emu.submit_count(out_task_id)} submit"
    )


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.0, 3600.0)})
@pytest.mark.parametrize(
    ("kind", "error"), [("deferred", "AireiterTimeoutError"), ("sensor_poke", "AirflowSensorTimeout")]
)
def test_an_outage_past_the_deadline_is_a_timeout_not_an_error(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any, kind: str, error: str
) -> None:
    emu = aireiter_connection
    out_task_id = f"outage-deadline-{kind.replace('_', '-')}"
    outage = Outage(emu, out_task_id, 3600.0, None)  # the service does not come back within the wait
    state, _ = _run_wait(tmp_path, kind, out_task_id, outage, timeout=15, collect=False)
    text = logs()
    assert outage.started is not None, "the outage never began"
    assert state == "failed"
    assert error in text and "AireiterTransientError" not in text, text[-4000:]
    assert "HTTP 502" in text  # the outage was met, and logged
    assert emu.submit_count(out_task_id) == 1
