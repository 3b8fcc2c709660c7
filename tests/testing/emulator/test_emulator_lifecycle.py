"""Task lifecycle on the emulator clock, duplicates, forced completion and reset."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import Emulator
from airflow_provider_aireiter.testing.emulator.catalog import durations_for, estimated_credits, model_kind


def _ts(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


@pytest.mark.aireiter_emulator(speed=10, durations={"*": (2.0, 3.0)})
def test_pending_processing_completed_on_the_clock(api):
    start = time.monotonic()
    api.submit("life", params={"prompt": "p", "aspect_ratio": "1:1"})
    seen: list[tuple[str, float]] = []
    while True:
        data = api.query("life").json()["data"]
        if not seen or seen[-1][0] != data["status"]:
            seen.append((data["status"], time.monotonic() - start))
        if data["status"] == "completed":
            break
        assert time.monotonic() - start < 5
        time.sleep(0.01)
    assert [status for status, _ in seen] == ["pending", "processing", "completed"]
    # 2 s pending + 3 s processing of emulator time at 10x = 0.2 s + 0.3 s real
    assert 0.17 <= seen[1][1] <= 0.45
    assert seen[2][1] >= 0.47
    assert abs((_ts(data["completed_at"]) - _ts(data["created_at"])) - 0.5) < 0.01
    assert data["credits_used"] == 10
    assert len(data["output"]) == 1 and data["output"][0]["url"].endswith("/life_0.png")


@pytest.mark.aireiter_emulator(speed=50)
def test_default_durations_differ_for_images_and_videos(api):
    api.submit("img", params={"prompt": "p"})
    api.submit("vid", model="veo3_1", params={"prompt": "p"})
    image = api.wait_status("img", ("completed",), timeout=3)
    # images: 3 s + 20 s -> 0.46 s real at 50x; videos: 5 s + 90 s -> 1.9 s real
    assert api.query("vid").json()["data"]["status"] in ("pending", "processing")
    video = api.wait_status("vid", ("completed",), timeout=5)
    image_span = _ts(image["completed_at"]) - _ts(image["created_at"])
    video_span = _ts(video["completed_at"]) - _ts(video["created_at"])
    assert abs(image_span - 23 / 50) < 0.01
    assert abs(video_span - 95 / 50) < 0.01
    assert video["output"][0]["url"].endswith(".mp4")


def test_catalog_tables():
    assert model_kind("seedance_1_5_pro") == "video"
    assert model_kind("my_wan_2_2") == "video"
    assert model_kind("hailuo_02") == "video"
    assert model_kind("nano_banana_pro") == "image"
    assert estimated_credits("seedream_v5_lite") == 10
    assert estimated_credits("veo3_1_fast") == 60
    assert estimated_credits("kling_v3") == 100
    assert durations_for("seedream_v5_lite", None) == (3.0, 20.0)
    assert durations_for("sora2", None) == (5.0, 90.0)
    assert durations_for("sora2", {"*": (1, 2)}) == (1.0, 2.0)
    assert durations_for("sora2", {"sora2": (4, 4), "*": (1, 2)}) == (4.0, 4.0)


@pytest.mark.aireiter_emulator(speed=1)
def test_complete_task_forces_completion_and_failure(api, aireiter_emulator):
    api.submit("force-ok")
    api.submit("force-fail")
    assert api.query("force-ok").json()["data"]["status"] == "pending"
    aireiter_emulator.complete_task("force-ok")
    aireiter_emulator.complete_task("force-fail", status="failed", error="nsfw")
    ok = api.query("force-ok").json()["data"]
    assert ok["status"] == "completed" and ok["output"] and ok["credits_used"] == 10
    failed = api.query("force-fail").json()["data"]
    assert failed["status"] == "failed" and failed["error"] == "nsfw"
    with pytest.raises(ValueError):
        aireiter_emulator.complete_task("force-ok")
    with pytest.raises(KeyError):
        aireiter_emulator.complete_task("missing")
    with pytest.raises(ValueError):
        aireiter_emulator.complete_task("force-ok", status="done")
    assert aireiter_emulator.task("force-ok")["status"] == "completed"
    assert aireiter_emulator.task("missing") is None


@pytest.mark.aireiter_emulator(speed=1)
def test_failed_task_gets_a_default_error_message(api, aireiter_emulator):
    api.submit("f")
    aireiter_emulator.complete_task("f", status="failed")
    assert isinstance(api.query("f").json()["data"]["error"], str)


@pytest.mark.aireiter_emulator(speed=1, duplicate_policy="reject")
def test_duplicate_reject(api, aireiter_emulator):
    first = api.submit("dup").json()["data"]
    second = api.submit("dup", params={"prompt": "another"}).json()
    assert second == {"ok": True, "statusCode": 400, "message": "out_task_id already exists", "data": None}
    assert aireiter_emulator.submit_count("dup") == 1
    assert aireiter_emulator.submit_request_count("dup") == 2
    assert api.query("dup").json()["data"]["task_id"] == first["task_id"]
    assert api.query("dup").json()["data"]["input"]["params"] == {"prompt": "a fox"}


@pytest.mark.aireiter_emulator(speed=1, duplicate_policy="return_existing")
def test_duplicate_return_existing(api, aireiter_emulator):
    first = api.submit("dup").json()["data"]
    aireiter_emulator.complete_task("dup")
    second = api.submit("dup", params={"prompt": "another"}).json()
    assert second["statusCode"] == 200
    assert second["data"]["task_id"] == first["task_id"]
    assert second["data"]["created_at"] == first["created_at"]
    assert second["data"]["status"] == "completed"
    assert aireiter_emulator.submit_count("dup") == 1
    assert aireiter_emulator.submit_request_count("dup") == 2
    assert aireiter_emulator.balance == 10_000 - 10


@pytest.mark.aireiter_emulator(speed=1, duplicate_policy="create_new")
def test_duplicate_create_new(api, aireiter_emulator):
    first = api.submit("dup").json()["data"]
    second = api.submit("dup", params={"prompt": "another"}).json()["data"]
    assert second["task_id"] != first["task_id"]
    assert aireiter_emulator.submit_count("dup") == 2
    assert api.query("dup").json()["data"]["task_id"] == second["task_id"]
    assert api.query("dup").json()["data"]["input"]["params"] == {"prompt": "another"}
    assert api.query(task_id=first["task_id"]).json()["data"]["input"]["params"] == {"prompt": "a fox"}
    assert aireiter_emulator.submits() == {"dup": 2}


@pytest.mark.aireiter_emulator(speed=1, credits=500)
def test_reset_clears_everything(api, aireiter_emulator):
    api.submit("r1")
    aireiter_emulator.complete_task("r1")
    aireiter_emulator.faults.script("query", ["http_500"])
    aireiter_emulator.balance = 3
    assert aireiter_emulator.balance == 3
    aireiter_emulator.reset()
    assert aireiter_emulator.requests() == []
    assert aireiter_emulator.submit_count("r1") == 0
    assert aireiter_emulator.balance == 500
    assert aireiter_emulator.faults.remaining("query") == 0
    response = api.query("r1")
    assert response.status_code == 200 and response.json()["message"] == "api task not found"


def test_stop_leaves_no_threads_and_frees_the_port():
    import threading

    before = set(threading.enumerate())
    emu = Emulator(speed=100)
    emu.start()
    session = requests.Session()  # an idle keep-alive connection must not block stop()
    session.get(emu.base_url + "/api/openapi/balance", headers={"Authorization": "Bearer emulator-key"}, timeout=5)
    base = emu.base_url
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 3
    assert set(threading.enumerate()) - before == set()
    assert not emu.running
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/", timeout=2)
    emu.stop()  # idempotent


def test_context_manager_and_properties():
    with Emulator(api_key="k/ey with space", speed=100, port=0) as emu:
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.port == int(emu.base_url.rsplit(":", 1)[1])
        assert emu.conn_json == (
            '{"conn_type": "aireiter", "host": "' + emu.base_url + '", "password": "k/ey with space"}'
        )
        assert emu.conn_uri == f"aireiter://:k%2Fey%20with%20space@http%3A%2F%2F127.0.0.1%3A{emu.port}"
        with pytest.raises(RuntimeError):
            emu.start()
    with pytest.raises(RuntimeError):
        _ = emu.port
