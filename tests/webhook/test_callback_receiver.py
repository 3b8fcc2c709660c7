"""The callback receiver over real HTTP (uvicorn on 127.0.0.1) with real Airflow env-var connections."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

import pytest
import requests

from airflow_provider_aireiter.hooks.aireiter import callback_token, callback_url, redact_token
from airflow_provider_aireiter.webhook.receiver import (
    CallbackLookupError,
    CallbackReceiver,
    WakeResult,
    create_callback_app,
)
from tests.webhook.helpers import (
    CONN_ID,
    NO_SECRET_CONN_ID,
    SECRET,
    LiveServer,
    Receiver,
    raw_exchange,
    start_receiver,
)

RECEIVER_LOGGER = "airflow_provider_aireiter.webhook.receiver"
BODY = {"out_task_id": "job-1", "status": "success"}


def post(url: str, **kwargs: object) -> requests.Response:
    kwargs.setdefault("json", BODY)
    return requests.post(url, timeout=10, **kwargs)  # type: ignore[arg-type]


# --- genuine callbacks ------------------------------------------------------------------------


def test_valid_callback_wakes_the_waiting_task(receiver: Receiver) -> None:
    receiver.waker.waiting["job-1"] = 1
    answer = post(receiver.signed_url("job-1"))
    assert answer.status_code == 202
    assert answer.json() == {"accepted": True, "woken": 1}
    assert receiver.waker.calls == ["job-1"]


def test_url_built_by_tokens_module_is_accepted(receiver: Receiver) -> None:
    receiver.waker.waiting["af-dag-task-0123abcd"] = 1
    url = callback_url(receiver.server.base_url, SECRET, "af-dag-task-0123abcd", CONN_ID)
    assert post(url).json() == {"accepted": True, "woken": 1}


def test_duplicate_delivery_is_idempotent(receiver: Receiver) -> None:
    receiver.waker.waiting["job-1"] = 1
    first = post(receiver.signed_url("job-1"))
    second = post(receiver.signed_url("job-1"))
    assert (first.status_code, first.json()["woken"]) == (202, 1)
    assert (second.status_code, second.json()["woken"]) == (202, 0)
    # the second one arrived moments after a wake-up: not even passed to the waker
    assert receiver.waker.calls == ["job-1"]


def test_duplicates_after_the_quiet_interval_reach_the_waker_and_wake_nothing(callback_conns: None) -> None:
    server, waker, _ = start_receiver(min_wake_interval=0)
    waker.waiting["job-1"] = 1
    with server:
        url = f"{server.base_url}{_job_1_path()}"
        assert [post(url).json()["woken"] for _ in range(3)] == [1, 0, 0]
    assert waker.calls == ["job-1"] * 3


def test_unknown_task_with_valid_token_is_accepted_and_kept(receiver: Receiver) -> None:
    answer = post(receiver.signed_url("nobody-waits"))
    assert answer.status_code == 202
    assert answer.json() == {"accepted": True, "woken": 0, "pending": True}


def _wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll ``condition`` for at most ``seconds`` (a bound on the test, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_callback_before_the_deferral_wakes_the_task_once_it_waits(receiver: Receiver) -> None:
    """Nobody waits when the callback arrives (the task has not deferred yet): it is kept and retried."""
    answer = post(receiver.signed_url("early-1"))
    assert answer.json() == {"accepted": True, "woken": 0, "pending": True}
    with receiver.waker.lock:
        receiver.waker.waiting["early-1"] = 1  # the task defers now
    assert _wait_until(lambda: "early-1" not in receiver.waker.waiting), "the kept callback never woke the task"


def test_callback_during_the_settle_time_is_held_until_it_ends(receiver: Receiver) -> None:
    settles = time.time() + 1.0
    with receiver.waker.lock:
        receiver.waker.waiting["held-1"] = 1
        receiver.waker.held["held-1"] = settles
    answer = post(receiver.signed_url("held-1"))
    assert answer.json() == {"accepted": True, "woken": 0, "pending": True}
    assert "held-1" in receiver.waker.waiting  # not woken before its deferral settled
    assert _wait_until(lambda: "held-1" not in receiver.waker.waiting), "the held callback never woke the task"
    assert time.time() >= settles


def test_a_token_wakes_only_its_own_connection(receiver: Receiver) -> None:
    post(receiver.signed_url("job-9"))
    assert set(receiver.waker.conn_ids) == {CONN_ID}


def test_empty_body_is_a_plain_wake_up(receiver: Receiver) -> None:
    receiver.waker.waiting["job-1"] = 1
    answer = requests.post(receiver.signed_url("job-1"), timeout=10)
    assert (answer.status_code, answer.json()["woken"]) == (202, 1)


def test_body_content_is_not_trusted(receiver: Receiver) -> None:
    # A body naming another task changes nothing: only the signed path counts.
    receiver.waker.waiting["job-2"] = 1
    answer = post(receiver.signed_url("job-1"), json={"out_task_id": "job-2", "status": "success"})
    assert answer.json() == {"accepted": True, "woken": 0, "pending": True}
    assert set(receiver.waker.calls) == {"job-1"}  # the first call and any retry, never job-2
    assert receiver.waker.waiting == {"job-2": 1}


# --- rejections, all without side effects ---------------------------------------------------------


def test_missing_token_is_401(receiver: Receiver) -> None:
    assert post(receiver.url("job-1")).status_code == 401
    assert post(receiver.url("job-1", token="")).status_code == 401
    assert receiver.waker.calls == []


def test_forged_token_is_403(receiver: Receiver) -> None:
    for token in (secrets.token_hex(32), "0" * 64, "not-even-hex", callback_token("wrong-secret", CONN_ID, "job-1")):
        assert post(receiver.url("job-1", token)).status_code == 403
    assert receiver.waker.calls == []


def test_token_replayed_for_another_task_is_403(receiver: Receiver) -> None:
    receiver.waker.waiting["job-2"] = 1
    token_for_job1 = callback_token(SECRET, CONN_ID, "job-1")
    assert post(receiver.url("job-2", token_for_job1)).status_code == 403
    assert receiver.waker.calls == []


def test_connection_without_callback_secret_is_403(receiver: Receiver) -> None:
    # Whatever the token: a connection without a secret never accepts callbacks.
    for secret in ("", SECRET, "k"):
        url = receiver.url("job-1", callback_token(secret, CONN_ID, "job-1"), conn_id=NO_SECRET_CONN_ID)
        assert post(url).status_code == 403
    assert receiver.waker.calls == []


@pytest.mark.parametrize("out_task_id", ["bad.id", "semi;colon", "x" * 65, "sp%20ace", "%2e%2e"])
def test_invalid_out_task_id_is_rejected(receiver: Receiver, out_task_id: str) -> None:
    # even with the token an attacker who knows the secret would compute for that id
    answer = post(receiver.url(out_task_id, callback_token(SECRET, CONN_ID, out_task_id)))
    assert answer.status_code == 403
    assert receiver.waker.calls == []


def test_non_json_body_is_400(receiver: Receiver) -> None:
    receiver.waker.waiting["job-1"] = 1
    for body in (b"status=success", b"{not json", b"\xff\xfe\x00garbage", b"[" * 60_000):
        answer = requests.post(receiver.signed_url("job-1"), data=body, timeout=10)
        assert answer.status_code == 400
    assert receiver.waker.calls == []


def test_non_json_body_with_forged_token_is_403_not_parsed(receiver: Receiver) -> None:
    answer = requests.post(receiver.url("job-1", "0" * 64), data=b"{not json", timeout=10)
    assert answer.status_code == 403


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(receiver: Receiver, method: str) -> None:
    receiver.waker.waiting["job-1"] = 1
    answer = requests.request(method, receiver.signed_url("job-1"), timeout=10)
    assert answer.status_code == 405
    assert receiver.waker.calls == []


def test_oversized_body_with_honest_content_length_is_413(receiver: Receiver) -> None:
    receiver.waker.waiting["job-1"] = 1
    big = json.dumps({"pad": "x" * 100_000}).encode()
    assert requests.post(receiver.signed_url("job-1"), data=big, timeout=10).status_code == 413
    # size is checked before the token: a forged request with a huge body is refused just the same
    assert requests.post(receiver.url("job-1", "0" * 64), data=big, timeout=10).status_code == 413
    assert receiver.waker.calls == []


def _job_1_path() -> str:
    """job-1's signed callback path."""
    return f"/aireiter/callback/{CONN_ID}/job-1?token={callback_token(SECRET, CONN_ID, 'job-1')}"


def _signed_post_head(framing: str) -> bytes:
    """The head of a JSON POST to job-1's signed callback URL, its body framed by the header ``framing``."""
    path = _job_1_path()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode()


def test_declared_oversize_is_refused_before_the_body_arrives(receiver: Receiver) -> None:
    head = _signed_post_head("Content-Length: 50000000")
    started = time.monotonic()
    status, _ = raw_exchange(receiver.server.port, head, [b"{}"])
    assert status == 413
    assert time.monotonic() - started < 5  # did not wait for 50 MB that never come
    assert receiver.waker.calls == []


def test_oversized_chunked_body_without_content_length_is_413(receiver: Receiver) -> None:
    receiver.waker.waiting["job-1"] = 1
    head = _signed_post_head("Transfer-Encoding: chunked")
    piece = b'{"pad": "' + b"x" * 16_000
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    status, _ = raw_exchange(receiver.server.port, head, [chunk] * 8 + [b"0\r\n\r\n"])
    assert status == 413
    assert receiver.waker.calls == []


def test_body_beyond_a_lying_content_length_is_never_read(receiver: Receiver) -> None:
    # Content-Length says 10 bytes; 100 KiB follow. Only the declared 10 bytes are the body: they
    # are not valid JSON, so the request is refused and the rest is never treated as its body.
    receiver.waker.waiting["job-1"] = 1
    head = _signed_post_head("Content-Length: 10")
    status, _ = raw_exchange(receiver.server.port, head, [b'{"pad": "' + b"x" * 100_000 + b'"}'])
    assert status == 400
    assert receiver.waker.calls == []


def test_lookup_failure_is_503_and_not_cached(callback_conns: None) -> None:
    attempts: list[str] = []

    def broken_lookup(conn_id: str) -> str | None:
        attempts.append(conn_id)
        raise CallbackLookupError("OperationalError")

    woken: list[str] = []

    def waker(conn_id: str, out_task_id: str) -> WakeResult:
        woken.append(out_task_id)
        return WakeResult(woken=1)

    handler = CallbackReceiver(secret_lookup=broken_lookup, waker=waker)
    with LiveServer(create_callback_app(handler), closers=(handler.close,)) as server:
        url = f"{server.base_url}/callback/{CONN_ID}/job-1?token={callback_token(SECRET, CONN_ID, 'job-1')}"
        assert post(url).status_code == 503
        assert post(url).status_code == 503
    assert attempts == [CONN_ID, CONN_ID]
    assert woken == []


def test_wake_failure_is_503(callback_conns: None) -> None:
    def failing_waker(conn_id: str, out_task_id: str) -> WakeResult:
        raise RuntimeError("database is locked")

    handler = CallbackReceiver(waker=failing_waker)
    with LiveServer(create_callback_app(handler), closers=(handler.close,)) as server:
        url = f"{server.base_url}/callback/{CONN_ID}/job-1?token={callback_token(SECRET, CONN_ID, 'job-1')}"
        answer = post(url)
    assert answer.status_code == 503
    assert "database" not in answer.text


# --- caching, flood, logs ---------------------------------------------------------------------------


def test_secret_is_cached_then_refreshed(callback_conns: None) -> None:
    server, _, lookup = start_receiver(secret_ttl=3.0)  # room for five requests on a busy machine
    with server:
        url = f"{server.base_url}{_job_1_path()}"
        for _ in range(5):
            assert post(url).status_code == 202
        assert lookup.calls == [CONN_ID]
        time.sleep(3.1)
        assert post(url).status_code == 202
    assert lookup.calls == [CONN_ID, CONN_ID]


def test_flood_of_bad_callbacks(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=RECEIVER_LOGGER)
    receiver.waker.waiting.update({"job-1": 1, "job-2": 1})
    valid_job1 = callback_token(SECRET, CONN_ID, "job-1")
    forged = [secrets.token_hex(32) for _ in range(400)]
    no_body: bytes | None = None
    bad_requests: list[tuple[str, bytes | None]] = [
        *[(receiver.url("job-1", token), no_body) for token in forged],  # forged tokens
        *[(receiver.url("job-2", valid_job1), no_body)] * 200,  # a real token replayed on another task
        *[(receiver.url(f"job-{i}"), no_body) for i in range(200)],  # no token
        *[(receiver.url("job-1", "0" * 64), b"x" * 70_000)] * 100,  # oversized
        *[(receiver.url("job-1", valid_job1, conn_id=NO_SECRET_CONN_ID), no_body)] * 100,  # no secret
    ]
    assert len(bad_requests) == 1000

    def send(item: tuple[str, bytes | None]) -> int:
        url, data = item
        with requests.Session() as session:
            if data is None:
                return session.post(url, json=BODY, timeout=10).status_code
            return session.post(url, data=data, timeout=10).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(send, bad_requests))
    flood_seconds = time.monotonic() - started

    assert all(status in (401, 403, 413) for status in statuses), sorted(set(statuses))
    assert statuses.count(202) == 0
    # no state change: nothing was ever passed to the waker, and secrets were looked up once per connection
    assert receiver.waker.calls == []
    assert receiver.waker.waiting == {"job-1": 1, "job-2": 1}
    assert sorted(receiver.lookup.calls) == sorted([CONN_ID, NO_SECRET_CONN_ID])

    # still responsive: a genuine callback is answered at once
    started = time.monotonic()
    answer = post(receiver.signed_url("job-1"))
    assert (answer.status_code, answer.json()) == (202, {"accepted": True, "woken": 1})
    assert time.monotonic() - started < 2
    assert flood_seconds < 30

    # logs: one line per request, never the secret, never a full token, never the body
    lines = [r.getMessage() for r in caplog.records if r.name == RECEIVER_LOGGER]
    assert len(lines) == 1001
    text = caplog.text
    assert SECRET not in text
    assert valid_job1 not in text
    assert not [token for token in forged if token in text]
    assert "success" not in text and "xxxx" not in text
    assert any(redact_token(valid_job1) in line for line in lines)


def test_log_line_is_concise_and_safe(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=RECEIVER_LOGGER)
    # (a newline never gets this far: the mount does not match it, so the answer is a plain 404)
    post(receiver.url("job-1\r\x1b[2JFAKE LOG LINE" + "y" * 300, "0" * 64))
    post(receiver.url("job-1", "f" * 5000))
    post(receiver.signed_url("job-1"))
    lines = [r.getMessage() for r in caplog.records if r.name == RECEIVER_LOGGER]
    assert len(lines) == 3
    assert all(len(line) < 200 and line.isprintable() for line in lines)
    assert "-> 403" in lines[0] and "-> 403" in lines[1] and "-> 202" in lines[2]
    assert "f" * 7 not in lines[1]


# --- the plugin ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_plugin_declares_the_mount() -> None:
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.plugins_manager import is_valid_plugin

    from airflow_provider_aireiter.plugins.webhook import AireiterWebhookPlugin, LazyWebhookApp

    assert is_valid_plugin(AireiterWebhookPlugin)
    assert AireiterWebhookPlugin.name == "aireiter_webhook"
    (entry,) = AireiterWebhookPlugin.fastapi_apps
    assert entry["url_prefix"] == "/aireiter"
    assert entry["name"] == "AIReiter callbacks"
    assert isinstance(entry["app"], LazyWebhookApp)
    assert not any(entry["url_prefix"].startswith(prefix) for prefix in RESERVED_URL_PREFIXES)
    plugins = {ep.name: ep.value for ep in entry_points(group="airflow.plugins")}
    assert plugins.get("aireiter_webhook") == "airflow_provider_aireiter.plugins.webhook:AireiterWebhookPlugin"


def test_plugin_app_serves_the_route(callback_conns: None) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from airflow_provider_aireiter.plugins.webhook import LazyWebhookApp

    app = LazyWebhookApp()
    with LiveServer(Starlette(routes=[Mount("/aireiter", app=app)])) as server:
        base = f"{server.base_url}/aireiter/callback/{CONN_ID}/job-1"
        assert requests.post(f"{base}?token={'0' * 64}", json=BODY, timeout=10).status_code == 403
        assert requests.post(base, json=BODY, timeout=10).status_code == 401
        assert requests.get(base, timeout=10).status_code == 405
        assert requests.post(f"{server.base_url}/aireiter/docs", timeout=10).status_code == 404


# --- what the README promises of secrets and failed wakes ----------------------------------------------


def test_a_callback_signed_with_a_secret_under_16_characters_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The operators refuse to sign with such a secret; the receiver refuses to accept one signed with it."""
    from tests.webhook.helpers import callback_conn_json, start_receiver

    short = "abcde"
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_SHORT", callback_conn_json(callback_secret=short))
    server, waker, _ = start_receiver()
    with server, caplog.at_level(logging.WARNING):
        url = f"{server.base_url}/aireiter/callback/aireiter_short/job-1"
        answers = [post(f"{url}?token={callback_token(short, 'aireiter_short', 'job-1')}") for _ in range(2)]
    assert [a.status_code for a in answers] == [403, 403]
    assert waker.calls == []
    warnings = [r.getMessage() for r in caplog.records if "callback_secret of 5 characters" in r.getMessage()]
    assert len(warnings) == 1 and short not in warnings[0]


def test_a_failed_wake_is_a_warning_once_per_kind(callback_conns: None, caplog: pytest.LogCaptureFixture) -> None:
    from airflow_provider_aireiter.webhook import receiver as pending

    pending._WARNED_FAILURES.clear()
    failures = iter([RuntimeError("row lock timed out"), RuntimeError("again"), KeyError("next_kwargs")])

    def failing_waker(conn_id: str, out_task_id: str) -> WakeResult:
        raise next(failures)

    handler = CallbackReceiver(waker=failing_waker, min_wake_interval=0)
    with caplog.at_level(logging.DEBUG), LiveServer(create_callback_app(handler), closers=(handler.close,)) as server:
        for _ in range(3):
            url = f"{server.base_url}/callback/{CONN_ID}/job-1?token={callback_token(SECRET, CONN_ID, 'job-1')}"
            assert post(url).status_code == 503
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "failed:" in r.getMessage()]
    assert len(warnings) == 2, warnings  # RuntimeError once, KeyError once
    assert "RuntimeError: row lock timed out" in warnings[0] and "KeyError" in warnings[1]


def test_the_plugin_checks_the_airflow_internals_the_wake_uses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    from airflow.models.trigger import Trigger

    from airflow_provider_aireiter.plugins.webhook import AireiterWebhookPlugin, missing_wake_internals

    assert missing_wake_internals() == []  # this Airflow has them all
    assert missing_wake_internals((("airflow.models.trigger", "Trigger.no_such_thing"),)) == [
        "airflow.models.trigger.Trigger.no_such_thing"
    ]
    monkeypatch.delattr(Trigger, "submit_event")
    monkeypatch.setitem(sys.modules, "airflow.api_fastapi.app", sys.modules.get("airflow.api_fastapi.app", sys))
    with caplog.at_level(logging.ERROR):
        AireiterWebhookPlugin.on_load()
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "airflow.models.trigger.Trigger.submit_event missing" in error.getMessage()
    caplog.clear()
    monkeypatch.delitem(sys.modules, "airflow.api_fastapi.app")
    AireiterWebhookPlugin.on_load()  # not the API server: nothing checked, nothing logged
    assert not caplog.records
