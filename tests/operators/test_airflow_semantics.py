"""The operators and the sensor behave as Airflow users expect: retries, timeouts, skips (run in ``dag.test()``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import conn_json
from tests.operators.dagtest_helpers import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

RETRIES = "retries=2, retry_delay=timedelta(seconds=0)"


def _queries(emu: Emulator) -> int:
    return sum(1 for r in emu.requests() if r["path"].endswith("/query"))


def _submits(emu: Emulator) -> int:
    return sum(1 for r in emu.requests() if r["path"].endswith("/submit"))


def _single_shot(monkeypatch: pytest.MonkeyPatch, emu: Emulator, api_key: str | None = None) -> None:
    """One HTTP try per call, so what is counted is Airflow's tries of the task."""
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(emu.base_url, api_key or emu.api_key, max_attempts=1))


def test_a_wrong_api_key_fails_at_once_without_using_the_retries(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection, api_key="wrong-key")
    state, _ = run_dag("wrong_key", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _queries(aireiter_connection) == 1  # one try: the look-up before the submit


@pytest.mark.aireiter_emulator(speed=100, credits=5)
def test_missing_credits_fail_at_once(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection)
    state, _ = run_dag("no_credits_once", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _submits(aireiter_connection) == 1


def test_params_the_service_rejects_fail_at_once(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection)
    # Passed through as given, refused by the service (business 400 naming the field).
    body = f'SeedreamV5LiteOperator(task_id="image", prompt="x", callback_url="ftp://example.com/hook", {RETRIES})'
    state, _ = run_dag("service_rejects_params", body, tmp_path)
    assert state == "failed"
    assert _submits(aireiter_connection) == 1


def test_a_wrong_base_url_fails_at_once(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _single_shot(monkeypatch, aireiter_connection)
    aireiter_connection.faults.rate("query", "html", 1.0)
    state, _ = run_dag("html_page", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _queries(aireiter_connection) == 1


def test_a_transient_outage_still_uses_the_retries(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The control for the tests above: the same count sees every try when the error is transient."""
    _single_shot(monkeypatch, aireiter_connection)
    aireiter_connection.faults.rate("query", "http_503", 1.0)
    state, _ = run_dag("outage", f'SeedreamV5LiteOperator(task_id="image", prompt="x", {RETRIES})', tmp_path)
    assert state == "failed"
    assert _queries(aireiter_connection) == 3
    assert _submits(aireiter_connection) == 0  # could not ask: never submitted


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
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIREITER_DEFAULT",
        conn_json(
            aireiter_connection.base_url,
            aireiter_connection.api_key,
            callback_base_url="http://127.0.0.1:9",
            callback_secret="0123456789abcdef0123",
        ),
    )
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
    from tests.operators.dagtest_helpers import submit_bodies

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


@pytest.mark.parametrize("regenerate", [False, True])
def test_rerunning_a_finished_task_reattaches_or_regenerates(
    aireiter_connection: Emulator, tmp_path: Path, regenerate: bool
) -> None:
    from datetime import datetime, timezone

    from tests.operators.dagtest_helpers import submit_bodies

    dag_id = f"rerun_finished_{regenerate}"
    body = f"""
    image = SeedreamV5LiteOperator(task_id="image", prompt="x", poll_interval=0.1, regenerate_finished={regenerate})
    collect({{"image": image.output}})
    """
    when = datetime(2026, 4, 1, tzinfo=timezone.utc)
    first_state, _ = run_dag(dag_id, body, tmp_path / "1", logical_date=when, run_after=when)
    second_state, second = run_dag(dag_id, body, tmp_path / "2", logical_date=when, run_after=when)
    assert (first_state, second_state) == ("success", "success")
    ids = [b["out_task_id"] for b in submit_bodies(aireiter_connection)]
    if regenerate:
        assert len(ids) == 2 and ids[1] == ids[0] + "-r2"
        assert second["image"]["out_task_id"] == ids[1]
    else:
        assert len(ids) == 1 and second["image"]["out_task_id"] == ids[0]


def test_a_task_cleared_after_its_prompt_changed_generates_anew_once(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any
) -> None:
    """Clearing is how Airflow users redo a task: a changed prompt must not hand back the old media,
    and clearing again without a change must not pay again."""
    from datetime import datetime, timezone

    from tests.operators.dagtest_helpers import submit_bodies

    when = datetime(2026, 5, 1, tzinfo=timezone.utc)

    def run(prompt: str, n: int) -> dict[str, Any]:
        body = f"""
        image = SeedreamV5LiteOperator(task_id="image", prompt={prompt!r}, aspect_ratio="16:9", poll_interval=0.1)
        collect({{"image": image.output}})
        """
        state, results = run_dag("cleared_after_change", body, tmp_path / str(n), logical_date=when, run_after=when)
        assert state == "success"
        return results["image"]

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
    from datetime import datetime, timezone

    from tests.operators.dagtest_helpers import submit_bodies

    when = datetime(2026, 5, 2, tzinfo=timezone.utc)
    body = """
    image = SeedreamV5LiteOperator(task_id="image", prompt="a red kite", poll_interval=0.1)
    collect({"image": image.output})
    """
    first_state, first = run_dag("cleared_unchanged", body, tmp_path / "1", logical_date=when, run_after=when)
    second_state, second = run_dag("cleared_unchanged", body, tmp_path / "2", logical_date=when, run_after=when)
    assert (first_state, second_state) == ("success", "success")
    assert len(submit_bodies(aireiter_connection)) == 1
    assert second["image"] == first["image"]


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.0, 3600.0)})
@pytest.mark.parametrize("expect_callback", [False, True])
def test_a_deferred_sensor_stretches_its_interval_only_when_told_a_callback_comes(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, expect_callback: bool
) -> None:
    """Callback settings on the connection are not enough: the watched task may have been submitted
    without a callback URL (elsewhere), and then the 60 s fallback would be the only poll."""
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIREITER_DEFAULT",
        conn_json(
            aireiter_connection.base_url,
            aireiter_connection.api_key,
            callback_base_url="http://127.0.0.1:9",
            callback_secret="0123456789abcdef0123",
        ),
    )
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
