"""Every operator runs for real under ``dag.test()`` against the emulator: sync and deferred."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.compat import AIRFLOW_VERSION
from tests.operators.dagtest_helpers import RESULT_KEYS, is_mp4, png_size, run_dag, submit_bodies, task_state

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_every_operator_generates_and_stores_files(
    aireiter_connection: Emulator, tmp_path: Path, out: Path, deferrable: bool, logs: Any
) -> None:
    body = f"""
    common = dict(deferrable={deferrable}, poll_interval=0.2, output_path="file://{out}/")
    image = SeedreamV5LiteOperator(task_id="image", prompt="a red fox in snow", aspect_ratio="16:9",
                                   resolution="2K", **common)
    video = Seedance15ProOperator(task_id="video", prompt="a kitten", video_length=5, aspect_ratio="9:16",
                                  resolution="720p", **common)
    veo = Veo31Operator(task_id="veo", prompt="move", image_url="https://example.com/a.png", channel="plus",
                        **common)
    other = AireiterGenerateOperator(task_id="other", model="nano_banana_pro", model_params={{"prompt": "x"}},
                                     **common)
    collect({{"image": image.output, "video": video.output, "veo": veo.output, "other": other.output}})
    """
    state, results = run_dag(f"ops_{'deferred' if deferrable else 'sync'}", body, tmp_path / "results")
    assert state == "success"
    assert set(results) == {"image", "video", "veo", "other"}
    for task_id, result in results.items():
        assert set(result) == RESULT_KEYS, task_id
        assert result["status"] == "completed" and result["credits_used"] > 0
        # the submit's estimate reaches the result, also through the deferral (the emulator charges it)
        assert result["estimated_credits"] == result["credits_used"], task_id
        assert result["out_task_id"].startswith("af-ops_")
        (output,) = result["outputs"]
        assert output["url"].startswith(aireiter_connection.base_url)
        assert output["path"].endswith(
            f"{result['out_task_id']}_0" + (".png" if task_id in ("image", "other") else ".mp4")
        )
        assert output["size"] == Path(output["path"].removeprefix("file://")).stat().st_size > 0
    assert png_size(results["image"]["outputs"][0]["path"]) == (2048, 1152)
    assert png_size(results["other"]["outputs"][0]["path"]) == (1024, 1024)
    assert is_mp4(results["video"]["outputs"][0]["path"]) and is_mp4(results["veo"]["outputs"][0]["path"])
    assert {b["model"] for b in submit_bodies(aireiter_connection)} == {
        "seedream_v5_lite",
        "seedance_1_5_pro",
        "veo3_1_plus",
        "nano_banana_pro",
    }
    assert not list(out.glob(".*part"))  # no partial file left behind
    logs = logs()
    assert "Submitted AIReiter task" in logs and "estimated credits 10" in logs
    assert "completed: 1 output(s), 10 credits used (estimated 10); files: file://" in logs
    assert aireiter_connection.api_key not in logs
    if deferrable:
        assert "[DAG TEST] running trigger in line" in logs
    stored = task_state(f"ops_{'deferred' if deferrable else 'sync'}")
    if AIRFLOW_VERSION >= (3, 3):  # the task state store holds the remote task and its credits
        assert stored == {
            task_id: {"out_task_id": r["out_task_id"], "estimated_credits": e, "credits_used": e}
            for task_id, r in results.items()
            for e in [r["credits_used"]]
        }
    else:
        assert stored == {}


SEEDS = [
    (
        "SeedreamV5LiteOperator(task_id='seed', out_task_id='my_task_123456', wait_for_completion=False, "
        "prompt='An orange tabby cat sitting on the windowsill, with Tokyo night view outside, cyberpunk style', "
        "aspect_ratio='16:9', resolution='3K', web_search=False)",
        {
            "model": "seedream_v5_lite",
            "params": {
                "prompt": "An orange tabby cat sitting on the windowsill, with Tokyo night view outside, cyberpunk style",
                "aspect_ratio": "16:9",
                "resolution": "3K",
                "web_search": False,
            },
            "out_task_id": "my_task_123456",
        },
    ),
    (
        "Seedance15ProOperator(task_id='seed', out_task_id='my_task_123456', wait_for_completion=False, "
        "prompt='A cute kitten playing under the sunlight, fluffy fur, bright eyes', video_length=5, "
        "aspect_ratio='16:9', resolution='720p')",
        {
            "model": "seedance_1_5_pro",
            "params": {
                "prompt": "A cute kitten playing under the sunlight, fluffy fur, bright eyes",
                "video_length": 5,
                "aspect_ratio": "16:9",
                "resolution": "720p",
            },
            "out_task_id": "my_task_123456",
        },
    ),
    (
        "Veo31Operator(task_id='seed', out_task_id='my_task_123456', wait_for_completion=False, "
        "prompt='Animate this image', image_url='https://example.com/reference.jpg', aspect_ratio='16:9')",
        {
            "model": "veo3_1",
            "params": {
                "prompt": "Animate this image",
                "image_url": "https://example.com/reference.jpg",
                "aspect_ratio": "16:9",
            },
            "out_task_id": "my_task_123456",
        },
    ),
]


@pytest.mark.parametrize(("operator", "expected"), SEEDS, ids=["seedream_v5_lite", "seedance_1_5_pro", "veo3_1"])
def test_seed_examples_send_exactly_the_documented_body(
    aireiter_connection: Emulator, tmp_path: Path, operator: str, expected: dict[str, Any]
) -> None:
    state, results = run_dag(
        "seed_" + expected["model"], f"seed = {operator}\ncollect({{'seed': seed.output}})", tmp_path
    )
    assert state == "success"
    assert submit_bodies(aireiter_connection) == [expected]
    assert results["seed"]["status"] == "pending" and results["seed"]["outputs"] == []
    assert results["seed"]["task_id"].startswith("order_")


def test_bad_templated_value_fails_before_any_request(aireiter_connection: Emulator, tmp_path: Path) -> None:
    body = """
    SeedreamV5LiteOperator(task_id="image", prompt="x", extra_params={"aspect_ratio": "{{ '5' + ':1' }}"})
    """
    state, _ = run_dag("bad_template", body, tmp_path)
    assert state == "failed"
    assert aireiter_connection.requests() == []


@pytest.mark.aireiter_emulator(speed=100, credits=5)
def test_service_errors_reach_the_user_unchanged(aireiter_connection: Emulator, tmp_path: Path, logs: Any) -> None:
    state, _ = run_dag("no_credits", 'SeedreamV5LiteOperator(task_id="image", prompt="x")', tmp_path)
    assert state == "failed"
    logs = logs()
    assert "AireiterInsufficientCreditsError" in logs and "not enough credits" in logs


def test_remote_failure_raises_task_failed_with_the_service_message(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any
) -> None:
    aireiter_connection.faults.script("submit", [{"kind": "task_failure", "message": "content rejected by review"}])
    state, _ = run_dag(
        "remote_fail", 'SeedreamV5LiteOperator(task_id="image", prompt="x", poll_interval=0.1)', tmp_path
    )
    assert state == "failed"
    logs = logs()
    assert "AireiterTaskFailedError" in logs and "content rejected by review" in logs


@pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.5, 1.0)}, duplicate_policy="create_new")
def test_timeout_names_the_out_task_id_and_retry_reattaches_without_paying_twice(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any
) -> None:
    """Try 1 gives up after 1 s while the video renders (1.5 s); try 2 reattaches to the same remote task."""
    body = """
    video = Seedance15ProOperator(task_id="video", prompt="slow", poll_interval=0.1, timeout=1.0,
                                  retries=1, retry_delay=timedelta(seconds=0))
    collect({"video": video.output})
    """
    state, results = run_dag("retry_reattach", body, tmp_path)
    logs = logs()
    assert "AireiterTimeoutError" in logs and "AireiterTaskSensor(out_task_id=" in logs
    out_task_id = results["video"]["out_task_id"]
    assert state == "success", logs[-3000:]
    assert "reattaching, nothing is submitted" in logs
    assert aireiter_connection.submit_count(out_task_id) == 1
    assert len(submit_bodies(aireiter_connection)) == 1
    # The query tells no estimate: on Airflow 3.3 the reattach reads the one try 1 kept in the task state
    # store; before 3.3 it is unknown.
    estimate = 100.0 if AIRFLOW_VERSION >= (3, 3) else None
    assert results["video"]["estimated_credits"] == estimate and results["video"]["credits_used"] == 100


def test_wait_for_completion_false_then_sensor_sync_and_deferred(
    aireiter_connection: Emulator, tmp_path: Path, out: Path
) -> None:
    body = f"""
    submit = Seedance15ProOperator(task_id="submit", prompt="waves", wait_for_completion=False)
    poke = AireiterTaskSensor(task_id="poke", out_task_id="{{{{ ti.xcom_pull(task_ids='submit')['out_task_id'] }}}}",
                              poke_interval=0.2, timeout=30, output_path="file://{out}/poke/")
    deferred = AireiterTaskSensor(task_id="deferred", deferrable=True, poke_interval=0.2, timeout=30,
                                  out_task_id="{{{{ ti.xcom_pull(task_ids='submit')['out_task_id'] }}}}")
    submit >> [poke, deferred]
    collect({{"submit": submit.output, "poke": poke.output, "deferred": deferred.output}})
    """
    state, results = run_dag("sense", body, tmp_path)
    assert state == "success"
    assert results["submit"]["status"] == "pending"
    for name in ("poke", "deferred"):
        assert results[name]["status"] == "completed"
        assert results[name]["out_task_id"] == results["submit"]["out_task_id"]
    assert is_mp4(results["poke"]["outputs"][0]["path"])
    assert results["deferred"]["outputs"][0]["path"] is None  # no output_path: nothing downloaded
    assert len(submit_bodies(aireiter_connection)) == 1


def test_sensor_failure_fails_and_soft_fail_skips(aireiter_connection: Emulator, tmp_path: Path) -> None:
    aireiter_connection.faults.script("submit", [{"kind": "task_failure", "message": "nope"}])
    body = """
    submit = SeedreamV5LiteOperator(task_id="submit", prompt="x", wait_for_completion=False,
                                    out_task_id="sensed-failure")
    hard = AireiterTaskSensor(task_id="hard", out_task_id="sensed-failure", poke_interval=0.1, timeout=20)
    soft = AireiterTaskSensor(task_id="soft", out_task_id="sensed-failure", poke_interval=0.1, timeout=20,
                              soft_fail=True, deferrable=True)
    submit >> [hard, soft]
    """
    state, _ = run_dag("sense_fail", body, tmp_path)
    assert state == "failed"
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        states = {ti.task_id: ti.state for ti in session.query(TaskInstance).filter_by(dag_id="sense_fail")}
    assert states == {"submit": "success", "hard": "failed", "soft": "skipped"}


def test_unknown_out_task_id_makes_the_sensor_wait_then_time_out(
    aireiter_connection: Emulator, tmp_path: Path, logs: Any
) -> None:
    body = 'AireiterTaskSensor(task_id="wait", out_task_id="never-submitted", poke_interval=0.1, timeout=0.5)'
    state, _ = run_dag("sense_unknown", body, tmp_path)
    assert state == "failed"
    logs = logs()
    assert logs.count("does not know task never-submitted yet") == 1
    assert aireiter_connection.query_count("never-submitted") >= 3


def test_retry_after_a_remote_failure_submits_a_new_attempt(aireiter_connection: Emulator, tmp_path: Path) -> None:
    """A failed remote task is not reattached: the retry submits again under <out_task_id>-r2."""
    aireiter_connection.faults.script("submit", [{"kind": "task_failure", "message": "transient model error"}])
    body = """
    image = SeedreamV5LiteOperator(task_id="image", prompt="x", poll_interval=0.1, retries=1,
                                   retry_delay=timedelta(seconds=0))
    collect({"image": image.output})
    """
    state, results = run_dag("retry_after_failure", body, tmp_path)
    assert state == "success"
    first, second = (b["out_task_id"] for b in submit_bodies(aireiter_connection))
    assert second == first + "-r2" and results["image"]["out_task_id"] == second
    assert aireiter_connection.task(first)["status"] == "failed"  # type: ignore[index]
