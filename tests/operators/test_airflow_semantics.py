"""The operators and the sensor behave as Airflow users expect: retries, timeouts, skips (run in ``dag.test()``)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import use_connection
from tests.operators.dagtest_helpers import run_dag, submit_bodies

pytestmark = pytest.mark.usefixtures("airflow_db")

RETRIES = "retries=2, retry_delay=timedelta(seconds=0)"


def _queries(emu: Emulator) -> int:
    return sum(1 for r in emu.requests() if r["path"].endswith("/query"))


def _submits(emu: Emulator) -> int:
    return len(submit_bodies(emu))


def _single_shot(monkeypatch: pytest.MonkeyPatch, emu: Emulator, api_key: str | None = None) -> None:
    """One HTTP try per call, so what is counted is Airflow's tries of the task."""
    use_connection(monkeypatch, emu, api_key, max_attempts=1)


#: Callback settings on the connection; nothing listens at the address.
CALLBACK_SETTINGS = {"callback_base_url": "http://127.0.0.1:9", "callback_secret": "0123456789abcdef0123"}


@pytest.mark.parametrize(
    ("dag_id", "api_key", "fault", "more_args", "counts"),
    [
        # one try: the look-up before the submit
        pytest.param("wrong_key", "wrong-key", None, "", {"queries": 1}, id="a_wrong_api_key"),
        pytest.param(
            "no_credits_once",
            None,
            None,
            "",
            {"submits": 1},
            id="missing_credits",
            marks=pytest.mark.aireiter_emulator(speed=100, credits=5),
        ),
        # Passed through as given, refused by the service (business 400 naming the field).
        pytest.param(
            "service_rejects_params",
            None,
            None,
            'callback_url="ftp://example.com/hook", ',
            {"submits": 1},
            id="params_the_service_rejects",
        ),
        pytest.param("html_page", None, "html", "", {"queries": 1}, id="a_wrong_base_url"),
        # The control for the cases above: the same count sees every try when the error is transient;
        # it could not ask, so it never submitted.
        pytest.param("outage", None, "http_503", "", {"queries": 3, "submits": 0}, id="a_transient_outage"),
    ],
)
def test_a_permanent_error_fails_at_once_a_transient_one_uses_the_retries(
    aireiter_connection: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dag_id: str,
    api_key: str | None,
    fault: str | None,
    more_args: str,
    counts: dict[str, int],
) -> None:
    _single_shot(monkeypatch, aireiter_connection, api_key=api_key)
    if fault is not None:
        aireiter_connection.faults.rate("query", fault, 1.0)
    body = f'SeedreamV5LiteOperator(task_id="image", prompt="x", {more_args}{RETRIES})'
    state, _ = run_dag(dag_id, body, tmp_path)
    assert state == "failed"
    counters = {"queries": _queries, "submits": _submits}
    assert {name: counters[name](aireiter_connection) for name in counts} == counts


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_every_success_log_is_free_of_error_lines(
    aireiter_connection: Emulator, tmp_path: Path, deferrable: bool, logs: Any
) -> None:
    out = tmp_path / "media"
    body = f"""
    SeedreamV5LiteOperator(task_id="image", prompt="x", deferrable={deferrable}, poll_interval=0.2,
                           output_path="file://{out}/")
    """
    state, _ = run_dag(f"no_error_lines_{deferrable}", body, tmp_path)
    assert state == "success"
    errors = [line for line in logs().splitlines() if "[error" in line or line.startswith("ERROR ")]
    assert errors == []


def _ti_rows(dag_id: str) -> dict[str, tuple[str, int]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            ti.task_id: (str(ti.state), int(ti.try_number))
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id)
        }


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.5, 1.0)})
def test_a_worker_side_wait_polls_at_poll_interval_even_with_callbacks(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing can wake a worker: with callback settings, a sync wait still polls every poll_interval."""
    use_connection(monkeypatch, aireiter_connection, **CALLBACK_SETTINGS)
    body = 'SeedreamV5LiteOperator(task_id="image", prompt="x", poll_interval=0.2, callback_poll_interval=60)'
    state, _ = run_dag("sync_with_callbacks", body, tmp_path)
    assert state == "success"
    # 1.5 s of rendering at 0.2 s: several polls. At the 60 s fallback there would be one.
    assert _queries(aireiter_connection) >= 4


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (600.0, 600.0)})
def test_execution_timeout_bounds_a_deferred_wait(aireiter_connection: Emulator, tmp_path: Path, logs: Any) -> None:
    body = """
    SeedreamV5LiteOperator(task_id="image", prompt="x", deferrable=True, poll_interval=0.2, timeout=3600,
                           execution_timeout=timedelta(seconds=2))
    """
    state, _ = run_dag("deferred_execution_timeout", body, tmp_path)
    assert state == "failed"
    text = logs()
    assert "AirflowTaskTimeout" in text and "execution_timeout reached while waiting in the triggerer" in text


@pytest.mark.parametrize("soft_fail", [False, True])
def test_a_deferred_sensor_timeout_is_airflows_sensor_timeout(
    aireiter_connection: Emulator, tmp_path: Path, soft_fail: bool
) -> None:
    """Never retried (as in poke mode), and skipped with soft_fail."""
    dag_id = f"deferred_sensor_timeout_{soft_fail}"
    body = f"""
    AireiterTaskSensor(task_id="wait", out_task_id="never-submitted", deferrable=True, poke_interval=0.2,
                       timeout=1, soft_fail={soft_fail}, {RETRIES})
    """
    state, _ = run_dag(dag_id, body, tmp_path)
    rows = _ti_rows(dag_id)
    assert rows["wait"] == ("skipped" if soft_fail else "failed", 1)  # one try: not retried
    assert state == ("success" if soft_fail else "failed")


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferred"])
def test_a_remote_failure_fails_the_sensor_once_and_soft_fail_skips(
    aireiter_connection: Emulator, tmp_path: Path, mode: str
) -> None:
    aireiter_connection.faults.script("submit", [{"kind": "task_failure", "message": "nope"}])
    dag_id = f"sensor_failure_{mode}"
    how = "deferrable=True" if mode == "deferred" else f"mode={mode!r}"
    body = f"""
    submit = SeedreamV5LiteOperator(task_id="submit", prompt="x", wait_for_completion=False, out_task_id="fails-{mode}")
    hard = AireiterTaskSensor(task_id="hard", out_task_id="fails-{mode}", poke_interval=0.2, timeout=30, {how},
                              {RETRIES})
    soft = AireiterTaskSensor(task_id="soft", out_task_id="fails-{mode}", poke_interval=0.2, timeout=30, {how},
                              soft_fail=True)
    submit >> [hard, soft]
    """
    run_dag(dag_id, body, tmp_path)
    rows = _ti_rows(dag_id)
    assert rows["hard"] == ("failed", 1)  # no retry: a retry would see the same failure
    assert rows["soft"][0] == "skipped"


def test_every_model_argument_takes_a_template(aireiter_connection: Emulator, tmp_path: Path) -> None:
    body = """
    SeedreamV5LiteOperator(task_id="image", prompt="x", aspect_ratio="{{ params.ratio }}",
                           resolution="{{ params.res }}", web_search="{{ params.search }}",
                           aireiter_conn_id="{{ params.conn }}", poll_interval=0.1)
    Seedance15ProOperator(task_id="video", prompt="y", video_length="{{ params.seconds }}",
                          aspect_ratio="{{ params.ratio }}", resolution="{{ params.video_res }}", poll_interval=0.1)
    Veo31Operator(task_id="veo", prompt="z", image_url="https://example.com/a.png", channel="{{ params.channel }}",
                  poll_interval=0.1)
    """
    dag_kwargs = (
        ', params={"ratio": "16:9", "res": "3K", "search": "false", "conn": "aireiter_default", "seconds": "5",'
        ' "video_res": "720p", "channel": "plus"}'
    )
    state, _ = run_dag("templated_model_args", body, tmp_path, dag_kwargs=dag_kwargs)
    assert state == "success"
    sent = {b["model"]: b["params"] for b in submit_bodies(aireiter_connection)}
    assert sent["seedream_v5_lite"] == {"prompt": "x", "aspect_ratio": "16:9", "resolution": "3K", "web_search": False}
    assert sent["seedance_1_5_pro"] == {"prompt": "y", "video_length": 5, "aspect_ratio": "16:9", "resolution": "720p"}
    assert sent["veo3_1_plus"] == {"prompt": "z", "image_url": "https://example.com/a.png"}


def test_a_bad_rendered_model_argument_fails_before_any_request(aireiter_connection: Emulator, tmp_path: Path) -> None:
    body = 'SeedreamV5LiteOperator(task_id="image", prompt="x", aspect_ratio="{{ params.ratio }}")'
    state, _ = run_dag("bad_rendered_ratio", body, tmp_path, dag_kwargs=', params={"ratio": "5:1"}')
    assert state == "failed"
    assert aireiter_connection.requests() == []


def _image_run(dag_id: str, image_args: str, results_dir: Path, when: datetime) -> dict[str, Any]:
    """Run (or rerun, as a cleared task) a DAG of one task ``image``, with ``image_args``, at ``when``: its result."""
    body = f"""
    image = SeedreamV5LiteOperator(task_id="image", {image_args})
    collect({{"image": image.output}})
    """
    state, results = run_dag(dag_id, body, results_dir, logical_date=when, run_after=when)
    assert state == "success"
    return dict(results["image"])


@pytest.mark.parametrize("regenerate", [False, True])
def test_rerunning_a_finished_task_reattaches_or_regenerates(
    aireiter_connection: Emulator, tmp_path: Path, regenerate: bool
) -> None:
    dag_id = f"rerun_finished_{regenerate}"
    args = f'prompt="x", poll_interval=0.1, regenerate_finished={regenerate}'
    when = datetime(2026, 4, 1, tzinfo=timezone.utc)
    _image_run(dag_id, args, tmp_path / "1", when)
    second = _image_run(dag_id, args, tmp_path / "2", when)
    ids = [b["out_task_id"] for b in submit_bodies(aireiter_connection)]
    if regenerate:
        assert len(ids) == 2 and ids[1] == ids[0] + "-r2"
        assert second["out_task_id"] == ids[1]
    else:
        assert len(ids) == 1 and second["out_task_id"] == ids[0]


def test_a_task_cleared_after_its_prompt_changed_generates_anew_once(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any
) -> None:
    """Clearing is how Airflow users redo a task: a changed prompt must not hand back the old media,
    and clearing again without a change must not pay again."""
    when = datetime(2026, 5, 1, tzinfo=timezone.utc)

    def run(prompt: str, n: int) -> dict[str, Any]:
        args = f'prompt={prompt!r}, aspect_ratio="16:9", poll_interval=0.1'
        return _image_run("cleared_after_change", args, tmp_path / str(n), when)

    red = run("a red kite", 1)
    blue = run("a blue kite", 2)  # the DAG file changed, then the task was cleared
    text = logs()
    bodies = submit_bodies(aireiter_connection)
    assert [b["params"]["prompt"] for b in bodies] == ["a red kite", "a blue kite"]
    assert bodies[1]["out_task_id"] == red["out_task_id"] + "-r2" == blue["out_task_id"]
    assert blue["outputs"][0]["url"] != red["outputs"][0]["url"]
    assert "was made from another request: params.prompt changed since" in text
    assert "aspect_ratio" not in text.split("was made from another request")[1].split("\n")[0]

    again = run("a blue kite", 3)  # cleared once more, nothing changed: the blue task, nothing paid
    assert again["out_task_id"] == blue["out_task_id"] and again["outputs"] == blue["outputs"]
    assert len(submit_bodies(aireiter_connection)) == 2
    assert "with the same model and params: reattaching, nothing is submitted" in logs()


def test_a_cleared_task_whose_request_did_not_change_reattaches(aireiter_connection: Emulator, tmp_path: Path) -> None:
    when = datetime(2026, 5, 2, tzinfo=timezone.utc)
    args = 'prompt="a red kite", poll_interval=0.1'
    first = _image_run("cleared_unchanged", args, tmp_path / "1", when)
    second = _image_run("cleared_unchanged", args, tmp_path / "2", when)
    assert len(submit_bodies(aireiter_connection)) == 1
    # The reattach cannot ask the service for the estimate. dag.test() makes the run anew, and the
    # run's task state store goes with the old one (a real clear keeps it: a retry reads it back, see
    # test_operators_dagtest.py), so the estimate is unknown here.
    assert first["estimated_credits"] == 10 and second["estimated_credits"] is None
    assert {**second, "estimated_credits": 10} == first


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.0, 3600.0)})
@pytest.mark.parametrize("expect_callback", [False, True])
def test_a_deferred_sensor_stretches_its_interval_only_when_told_a_callback_comes(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, expect_callback: bool
) -> None:
    """Callback settings on the connection are not enough: the watched task may have been submitted
    without a callback URL (elsewhere), and then the 60 s fallback would be the only poll."""
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook

    use_connection(monkeypatch, aireiter_connection, **CALLBACK_SETTINGS)
    AireiterHook().submit("seedream_v5_lite", {"prompt": "x"}, "watched")  # no callback URL

    def complete_2_s_after_the_first_poke() -> None:
        while aireiter_connection.query_count("watched") < 1:
            time.sleep(0.05)
        time.sleep(2)
        aireiter_connection.complete_task("watched")

    threading.Thread(target=complete_2_s_after_the_first_poke, daemon=True).start()
    body = f"""
    AireiterTaskSensor(task_id="wait", out_task_id="watched", deferrable=True, poke_interval=0.2,
                       callback_poll_interval=8, expect_callback={expect_callback}, timeout=60)
    """
    state, _ = run_dag(f"sensor_interval_{expect_callback}", body, tmp_path)
    assert state == "success"
    queries = aireiter_connection.query_count("watched")
    if expect_callback:
        assert queries <= 3  # the poke, then the fallback poll 8 s later
    else:
        assert queries >= 4  # every 0.2 s until the task completes 2 s after the first poke
