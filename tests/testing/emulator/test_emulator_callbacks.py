"""Completion callbacks: body, failure, retries and the callback faults."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from airflow_provider_aireiter.testing.emulator import Fault


def _wait_records(emu, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = emu.callbacks()
        if len(records) >= count:
            return records
        time.sleep(0.01)
    return emu.callbacks()


def test_callback_on_success_posts_the_query_data(api, aireiter_emulator, receiver):
    api.submit("cb1", callback_url=receiver.url + "/hooks/aireiter?token=s3cret", metadata={"k": "v"})
    got = receiver.wait_for(1)
    assert len(got) == 1
    call = got[0]
    assert call["path"] == "/hooks/aireiter?token=s3cret"
    assert call["content_type"] == "application/json"
    assert call["body"]["status"] == "completed"
    assert call["body"]["out_task_id"] == "cb1"
    assert call["body"]["metadata"] == {"k": "v"}
    assert call["body"]["output"][0]["url"].startswith(aireiter_emulator.base_url + "/media/")
    assert call["body"] == api.query("cb1").json()["data"]
    records = _wait_records(aireiter_emulator, 1)
    assert records[0]["path"] == "/hooks/aireiter"
    assert records[0]["out_task_id"] == "cb1"
    assert records[0]["status_code"] == 200 and records[0]["delivered"] is True and records[0]["attempt"] == 1
    assert "s3cret" not in repr(records)
    admin = requests.get(aireiter_emulator.base_url + "/_emulator/callbacks", timeout=5)
    assert admin.json() == records and "s3cret" not in admin.text


@pytest.mark.aireiter_emulator(speed=1)
def test_callback_on_failure(api, aireiter_emulator, receiver):
    api.submit("cb2", callback_url=receiver.url + "/cb")
    aireiter_emulator.complete_task("cb2", status="failed", error="rejected by review")
    body = receiver.wait_for(1)[0]["body"]
    assert body["status"] == "failed" and body["error"] == "rejected by review"


def test_callback_retried_on_500(api, aireiter_emulator, make_receiver):
    flaky = make_receiver([500, 503])
    api.submit("cb3", callback_url=flaky.url + "/cb")
    got = flaky.wait_for(3)
    assert len(got) == 3
    records = _wait_records(aireiter_emulator, 3)
    assert [(r["attempt"], r["status_code"]) for r in records] == [(1, 500), (2, 503), (3, 200)]
    # backoff 1 s then 2 s of emulator time at 100x, but at least 0.05 s
    assert got[1]["time"] - got[0]["time"] >= 0.045
    assert got[2]["time"] - got[1]["time"] >= 0.045
    time.sleep(0.2)
    assert len(flaky.received) == 3


def test_callback_records_the_start_of_the_answer(api, aireiter_emulator, make_receiver):
    chatty = make_receiver([503], answer=b'{"accepted": true, "woken": 1}' + b"x" * 1000)
    api.submit("cb3a", callback_url=chatty.url + "/cb")
    records = _wait_records(aireiter_emulator, 2)
    assert [r["status_code"] for r in records] == [503, 200]
    for record in records:
        assert record["answer"].startswith('{"accepted": true, "woken": 1}')
        assert len(record["answer"]) == 256


def test_callback_answer_is_empty_or_none(api, aireiter_emulator, receiver):
    api.submit("cb3b", callback_url=receiver.url + "/cb")
    assert _wait_records(aireiter_emulator, 1)[0]["answer"] == ""
    aireiter_emulator.reset()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.submit("cb3c", callback_url=f"http://127.0.0.1:{port}/cb")
    record = _wait_records(aireiter_emulator, 1)[0]
    assert record["status_code"] is None and record["answer"] is None


def test_callback_gives_up_after_four_attempts(api, aireiter_emulator, make_receiver):
    broken = make_receiver([500] * 10)
    api.submit("cb4", callback_url=broken.url + "/cb")
    _wait_records(aireiter_emulator, 4)
    time.sleep(0.4)
    records = aireiter_emulator.callbacks()
    assert [r["attempt"] for r in records] == [1, 2, 3, 4]
    assert not any(r["delivered"] for r in records)
    assert len(broken.received) == 4


def test_callback_retried_on_connection_error(api, aireiter_emulator):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.submit("cb5", callback_url=f"http://127.0.0.1:{port}/cb")
    records = _wait_records(aireiter_emulator, 4)
    assert [r["status_code"] for r in records] == [None] * 4
    assert all(r["error"] for r in records)


def test_callback_drop(api, aireiter_emulator, receiver):
    aireiter_emulator.faults.script("callback", ["callback_drop"])
    api.submit("cb6", callback_url=receiver.url + "/cb")
    api.wait_status("cb6", ("completed",))
    time.sleep(0.3)
    assert receiver.received == []
    records = aireiter_emulator.callbacks()
    assert len(records) == 1 and records[0]["fault"] == "callback_drop" and records[0]["delivered"] is False


def test_callback_duplicate(api, aireiter_emulator, receiver):
    aireiter_emulator.faults.script("callback", ["callback_duplicate"])
    api.submit("cb7", callback_url=receiver.url + "/cb")
    got = receiver.wait_for(2)
    time.sleep(0.2)
    assert len(receiver.received) == 2
    assert got[0]["body"] == got[1]["body"]


@pytest.mark.aireiter_emulator(speed=1)
def test_callback_delay(api, aireiter_emulator, receiver):
    aireiter_emulator.faults.script("callback", [Fault("callback_delay", seconds=0.6)])
    api.submit("cb8", callback_url=receiver.url + "/cb")
    finished = time.monotonic()
    aireiter_emulator.complete_task("cb8")
    time.sleep(0.3)
    assert receiver.received == []
    got = receiver.wait_for(1)
    assert len(got) == 1
    assert got[0]["time"] - finished >= 0.55


def test_no_callback_without_url(api, aireiter_emulator, receiver):
    api.submit("cb9")
    api.wait_status("cb9", ("completed",))
    time.sleep(0.1)
    assert aireiter_emulator.callbacks() == []
