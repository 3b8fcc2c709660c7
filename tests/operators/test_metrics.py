"""The provider's metrics go through Airflow's own ``Stats``: a real StatsD listener receives those of a real run.

The DAG runs with ``dag.test()`` in a subprocess started with ``[metrics] statsd_on`` in its environment,
as a worker would be: Airflow sets its ``Stats`` up from the configuration of the process. The
listener is a UDP socket on 127.0.0.1 in this process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import airflow
import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import DAGS_FOLDER, StatsdListener, use_connection
from tests.operators.dagtest_helpers import dag_source

#: Airflow 3.3 and newer have the task state store (AIP-103)
STORE = tuple(int(p) for p in airflow.__version__.split(".")[:2]) >= (3, 3)

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.stop()


def total(metrics: list[tuple[str, float, str]], name: str, kind: str = "c") -> float:
    assert all(t == kind for n, _, t in metrics if n == name), f"{name} is not of type {kind}: {metrics}"
    return sum(v for n, v, t in metrics if n == name)


def run_in_subprocess(dag_id: str, body: str, results: Path, env: dict[str, str]) -> str:
    """``dag.test()`` in a fresh interpreter with ``env`` added; returns its output."""
    os.makedirs(DAGS_FOLDER, exist_ok=True)
    path = Path(DAGS_FOLDER) / f"{dag_id}.py"
    path.write_text(dag_source(dag_id, body))
    results.mkdir(parents=True, exist_ok=True)
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('metrics_dag', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print('RUN STATE', module.dag.test().state)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env, "RESULTS_DIR": str(results)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    return output


def seconds_between(created_at: str, completed_at: str) -> float:
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (created_at, completed_at))
    return (end - start).total_seconds()


# 10 + 10 + 100 + 100 credits for the first four remote tasks, then 5 left: the last submit is refused (433).
# The video runs 6.5 s: its first try times out at 4 s, its second (started at once) usually finds it
# running and sees it finish;
# "late" runs 0.5 s, so its second try (3 s after the first timed out) finds it finished.
@pytest.mark.aireiter_emulator(
    speed=1,
    durations={"*": (0.5, 1.0), "seedance_1_5_pro": (0.5, 6.0), "metrics_late_video": (0.1, 0.4)},
    duplicate_policy="create_new",
    credits=225,
)
def test_a_real_run_sends_its_metrics_to_statsd(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, statsd: StatsdListener, tmp_path: Path
) -> None:
    """A sync image, one reattaching to it once finished, a deferred one expecting a callback, a video whose
    retry reattaches, and a refused submit."""
    emu = aireiter_connection
    # Callbacks on (sent to a closed port: none arrives), so the deferred task's trigger polls as the fallback.
    use_connection(monkeypatch, emu, callback_base_url="http://127.0.0.1:9", callback_secret="0123456789abcdef0123")
    body = """
    image = SeedreamV5LiteOperator(task_id="image", prompt="a fox", poll_interval=0.1, out_task_id="metrics-image")
    again = SeedreamV5LiteOperator(task_id="again", prompt="a fox", poll_interval=0.1, out_task_id="metrics-image")
    deferred = AireiterGenerateOperator(task_id="deferred", model="nano_banana_pro", model_params={"prompt": "x"},
                                        deferrable=True, poll_interval=0.1, callback_poll_interval=0.2)
    video = Seedance15ProOperator(task_id="video", prompt="slow", poll_interval=0.1, timeout=4.0,
                                  retries=1, retry_delay=timedelta(seconds=0))
    late = AireiterGenerateOperator(task_id="late", model="metrics_late_video", model_params={"prompt": "x"},
                                    poll_interval=0.1, timeout=0.3, retries=1, retry_delay=timedelta(seconds=3))
    broke = SeedreamV5LiteOperator(task_id="broke", prompt="no credits left", poll_interval=0.1)
    image >> again >> deferred >> video >> late >> broke
    collect({"image": image.output, "deferred": deferred.output, "video": video.output, "late": late.output})
    """
    output = run_in_subprocess("metrics_run", body, tmp_path / "results", statsd.env())
    assert "RUN STATE failed" in output, output[-3000:]  # "broke" fails: no credits
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(results) == {"image", "deferred", "video", "late"}
    threading.Event().wait(0.3)  # the last datagrams
    metrics = statsd.ours()
    names = {name for name, _, _ in metrics}

    # one prefix, names StatsD and Airflow's validation accept, no secret in them
    assert all(re.fullmatch(r"aireiter(\.[A-Za-z0-9_-]+)+", n) and len(n) < 250 for n in names), names
    assert not any(emu.api_key in n or "0123456789abcdef0123" in n for n in names)

    # submits and reattaches by model: the retried video try reattached and did not submit again
    assert total(metrics, "aireiter.submit.seedream_v5_lite") == 1  # "broke" was refused: no task made
    assert total(metrics, "aireiter.submit.nano_banana_pro") == 1
    assert total(metrics, "aireiter.submit.seedance_1_5_pro") == 1
    assert total(metrics, "aireiter.reattach.seedance_1_5_pro") == 1
    assert total(metrics, "aireiter.reattach.seedream_v5_lite") == 1  # "again", to the finished "image"
    assert {n for n in names if n.startswith(("aireiter.submit.", "aireiter.reattach."))} == {
        "aireiter.submit.seedream_v5_lite",
        "aireiter.submit.nano_banana_pro",
        "aireiter.submit.seedance_1_5_pro",
        "aireiter.reattach.seedance_1_5_pro",
        "aireiter.reattach.seedream_v5_lite",
        "aireiter.submit.metrics_late_video",
        "aireiter.reattach.metrics_late_video",
    }
    assert emu.submit_count(results["video"]["out_task_id"]) == 1
    assert emu.submit_count(results["late"]["out_task_id"]) == 1

    # credits: estimated at the submit, used as the service reports them, once per remote task ("again"
    # reattached to the image once it had finished: not counted twice)
    # The video's second try reattached while the task ran (it then saw it finish and counts it) or, on a
    # slow machine, once it had finished: counted on 3.3 (the store), never on older lines (see "late").
    seen = re.search(rf"already has task {results['video']['out_task_id']} \((\w+)\)", output)
    assert seen is not None, output[-3000:]
    video_counted = STORE or seen.group(1) != "completed"
    for task_id, model, estimate, counted in [
        ("image", "seedream_v5_lite", 10, True),
        ("deferred", "nano_banana_pro", 10, True),
        ("video", "seedance_1_5_pro", 100, video_counted),
    ]:
        assert total(metrics, f"aireiter.credits.estimated.{model}") == estimate, model
        used = results[task_id]["credits_used"]
        assert used == estimate and total(metrics, f"aireiter.credits.used.{model}") == (used if counted else 0), model
        # submit to completion by the service's clock, in milliseconds, also after a deferral and a reattach
        timings = [v for n, v, t in metrics if n == f"aireiter.completion_time.{model}" and t == "ms"]
        expected = seconds_between(results[task_id]["created_at"], results[task_id]["completed_at"]) * 1000
        if not counted:
            assert timings == [], (model, timings)
            continue
        assert len(timings) == 1 and timings[0] == pytest.approx(expected, abs=1), (model, timings, expected)
        assert 1000 <= timings[0] < 30_000

    # "late" finished while no try waited: its second try found it finished. On Airflow 3.3 the task state
    # store says the first try took it on and never saw it finish, so it is counted now, once; older lines
    # have no store and cannot tell it from a task an earlier try counted, so they count it never (the gap
    # the metrics page states).
    late = results["late"]
    assert late["credits_used"] == 100 and late["estimated_credits"] == (100 if STORE else None)
    assert total(metrics, "aireiter.credits.estimated.metrics_late_video") == 100
    assert total(metrics, "aireiter.credits.used.metrics_late_video") == (100 if STORE else 0)
    late_timings = [v for n, v, _ in metrics if n == "aireiter.completion_time.metrics_late_video"]
    late_ms = seconds_between(late["created_at"], late["completed_at"]) * 1000
    assert late_timings == ([pytest.approx(late_ms, abs=1)] if STORE else [])

    # fallback polls: only the deferred task expecting a callback polls as a fallback
    assert total(metrics, "aireiter.fallback_poll") >= 1
    assert emu.query_count(results["deferred"]["out_task_id"]) >= total(metrics, "aireiter.fallback_poll")

    # errors by reason: the video's first try timed out, the last task had no credits
    assert total(metrics, "aireiter.error.timeout") == 2  # the video's and late's first tries
    assert total(metrics, "aireiter.error.insufficient_credits") == 1
    assert {n for n in names if n.startswith("aireiter.error.")} == {
        "aireiter.error.timeout",
        "aireiter.error.insufficient_credits",
    }
    assert "aireiter.callback_wake" not in names  # no callback arrived


def test_metric_names_are_sanitized_and_never_fail_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag value with characters StatsD cannot hold becomes one clean segment; a broken Stats is ignored."""
    from airflow_provider_aireiter import compat

    sent: list[tuple[Any, ...]] = []

    class Recorder:
        @staticmethod
        def incr(stat: str, count: Any, *, tags: Any) -> None:
            sent.append((stat, count, tags))

        @staticmethod
        def timing(stat: str, dt: Any, *, tags: Any) -> None:
            raise RuntimeError("metrics backend broken")

    monkeypatch.setattr(compat, "stats", lambda: Recorder)
    compat.metric("credits.used", 2.5, model="a.b/c d:e" + "x" * 100)
    compat.metric("credits.used", 10.0, model="veo3_1")
    compat.metric("completion_time", compat.timedelta(seconds=1), model="veo3_1")  # does not raise
    assert sent == [
        ("aireiter.credits.used.a_b_c_d_e" + "x" * 55, 2.5, {"model": "a.b/c d:e" + "x" * 100}),
        ("aireiter.credits.used.veo3_1", 10, {"model": "veo3_1"}),
    ]
    assert type(sent[1][1]) is int  # "10|c", not "10.0|c"
