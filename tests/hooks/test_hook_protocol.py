"""The hook against a scripted real HTTP server: headers, bodies, envelopes, error classes, retries."""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_provider_aireiter import __version__
from airflow_provider_aireiter.exceptions import (
    AireiterAuthError,
    AireiterGarbledResponseError,
    AireiterInsufficientCreditsError,
    AireiterInvalidRequestError,
    AireiterRateLimitedError,
    AireiterResponseError,
    AireiterTaskFailedError,
    AireiterTaskNotFoundError,
    AireiterTimeoutError,
    AireiterTransientError,
)
from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from airflow_provider_aireiter.hooks.transport import BODY_PREVIEW_CHARS, preview
from tests.conftest import API_KEY, FAST_RETRIES
from tests.scripted_server import Answer, ScriptedServer, ok

SUBMITTED = {"task_id": "", "out_task_id": "t1", "status": "pending", "estimated_credits": 100}
HTML = "<!doctype html><html><body>AIReiter - create images</body></html>"


def hook() -> AireiterHook:
    return AireiterHook(retry_policy=FAST_RETRIES)


def test_submit_sends_bearer_user_agent_and_exact_body(scripted: ScriptedServer) -> None:
    scripted.add(ok(SUBMITTED))
    result = hook().submit(
        "seedream_v5_lite",
        {"prompt": "a fox", "resolution": "3K"},
        "t1",
        callback_url="https://cb.example/x",
        metadata={"dag": "d"},
    )
    sent = scripted.received[0]
    assert sent.method == "POST" and sent.path == "/api/openapi/submit"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["User-Agent"].startswith(f"airflow-provider-aireiter/{__version__}")
    assert sent.json() == {
        "model": "seedream_v5_lite",
        "params": {"prompt": "a fox", "resolution": "3K"},
        "out_task_id": "t1",
        "callback_url": "https://cb.example/x",
        "metadata": {"dag": "d"},
    }
    assert result.out_task_id == "t1"
    assert result.task_id is None  # "" means unknown: out_task_id is the key
    assert result.estimated_credits == 100


def test_one_session_is_reused(scripted: ScriptedServer) -> None:
    h = hook()
    h.find_task("a")
    h.find_task("b")
    assert h.get_conn() is h.get_conn()
    assert len(scripted.received) == 2


def test_gpt_image_2_official_envelope(scripted: ScriptedServer) -> None:
    scripted.add(Answer(200, {"code": 200, "data": [{"status": "submitted", "task_id": "task_01ABC"}]}))
    result = hook().submit("gpt_image_2_official", {"prompt": "x"}, "t2")
    assert (result.task_id, result.status, result.out_task_id) == ("task_01ABC", "submitted", "t2")


@pytest.mark.parametrize(
    ("answer", "error", "requests_made"),
    [
        (Answer(401, {"ok": True, "statusCode": 401, "message": "unauthorized"}), AireiterAuthError, 1),
        (ok(None).__class__(200, {"ok": True, "statusCode": 401, "message": "bad key"}), AireiterAuthError, 1),
        (
            Answer(200, {"ok": True, "statusCode": 433, "message": "not enough credits", "data": None}),
            AireiterInsufficientCreditsError,
            1,
        ),
        (Answer(200, {"ok": True, "statusCode": 400, "message": "invalid params"}), AireiterInvalidRequestError, 1),
        (Answer(200, HTML), AireiterResponseError, 1),
        (Answer(200, {"ok": True, "statusCode": 429, "message": "busy"}), AireiterRateLimitedError, 4),
        (Answer(429, "{}", {"Retry-After": "0"}), AireiterRateLimitedError, 4),
        (Answer(503, b"upstream down"), AireiterTransientError, 4),
        (Answer(200, b'{"ok": true, "statusCo'), AireiterGarbledResponseError, 4),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_query_errors_and_which_are_retried(
    scripted: ScriptedServer, answer: Answer, error: type[Exception], requests_made: int, mode: str
) -> None:
    scripted.default = answer
    with pytest.raises(error) as caught:
        if mode == "sync":
            hook().query(out_task_id="t1")
        else:
            asyncio.run(hook().aquery(out_task_id="t1"))
    assert len(scripted.received) == requests_made
    assert API_KEY not in str(caught.value)


def test_unknown_task_is_none_for_find_and_an_error_for_query(scripted: ScriptedServer) -> None:
    assert hook().find_task("nope") is None
    with pytest.raises(AireiterTaskNotFoundError, match="nope"):
        hook().query(out_task_id="nope")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_after_is_honoured_then_success(scripted: ScriptedServer, mode: str) -> None:
    scripted.add(Answer(429, "{}", {"Retry-After": "0.15"}), ok({"out_task_id": "t1", "status": "processing"}))
    policy = FAST_RETRIES.__class__(max_attempts=3, base_delay=0.001, max_delay=0.001, max_retry_after=5)
    import time

    started = time.monotonic()
    h = AireiterHook(retry_policy=policy)
    info = h.query(out_task_id="t1") if mode == "sync" else asyncio.run(h.aquery(out_task_id="t1"))
    assert info.status == "processing"
    assert time.monotonic() - started >= 0.15


def test_task_info_tolerates_error_shapes_and_numeric_status(scripted: ScriptedServer) -> None:
    scripted.add(
        ok({"out_task_id": "t1", "status": "failed", "error": {"code": "E42", "message": "content rejected"}}),
        ok({"out_task_id": "t1", "status": 2, "output": [{"video_url": "https://cdn/x.mp4"}], "credits_used": 3}),
    )
    failed = hook().query(out_task_id="t1")
    assert (failed.error, failed.error_code, failed.kind.value) == ("content rejected", "E42", "failure")
    done = hook().query(out_task_id="t1")
    assert (done.status, done.output_urls, done.credits_used) == ("completed", ["https://cdn/x.mp4"], 3)


def test_wait_logs_changes_warns_once_on_unknown_status(
    scripted: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    scripted.add(
        ok({"out_task_id": "t1", "status": "pending"}),
        ok({"out_task_id": "t1", "status": "rendering"}),
        ok({"out_task_id": "t1", "status": "rendering"}),
        ok({"out_task_id": "t1", "status": "completed", "output": [{"url": "https://cdn/a.png"}]}),
    )
    info = hook().wait_for_task("t1", poll_interval=0.01, timeout=5)
    assert info.status == "completed"
    text = "".join(capfd.readouterr())
    assert text.count("unknown status 'rendering'") == 1
    assert "is pending" in text and "is completed" in text and "elapsed" in text


def test_wait_raises_failed_and_timeout(scripted: ScriptedServer) -> None:
    scripted.add(ok({"out_task_id": "t1", "status": "failed", "error": "nsfw"}))
    with pytest.raises(AireiterTaskFailedError, match="nsfw") as failed:
        hook().wait_for_task("t1", poll_interval=0.01, timeout=5)
    assert failed.value.remote_error == "nsfw" and failed.value.out_task_id == "t1"
    scripted.default = ok({"out_task_id": "t2", "status": "processing"})
    with pytest.raises(AireiterTimeoutError, match="t2"):
        hook().wait_for_task("t2", poll_interval=0.01, timeout=0.1)


def test_async_query_uses_the_same_parsing(scripted: ScriptedServer) -> None:
    scripted.add(
        Answer(502, b"bad gateway"),
        ok({"out_task_id": "t1", "status": "completed", "output": [{"url": "https://cdn/a.png"}]}),
    )

    async def run() -> tuple[str, list[str]]:
        info = await hook().aquery(out_task_id="t1")
        return info.status, info.output_urls

    assert asyncio.run(run()) == ("completed", ["https://cdn/a.png"])
    assert scripted.received[-1].headers["Authorization"] == f"Bearer {API_KEY}"


def test_secret_never_in_repr_or_logs(
    scripted: ScriptedServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    scripted.default = Answer(503, b"down")
    h = hook()
    with caplog.at_level(logging.DEBUG), pytest.raises(AireiterTransientError) as caught:
        h.query(out_task_id="t1")
    logged = caplog.text + "".join(capfd.readouterr())
    assert "retry 1 of 3" in logged  # the retries were logged ...
    assert API_KEY not in repr(h) and API_KEY not in repr(h.settings)
    assert API_KEY not in logged and API_KEY not in str(caught.value)  # ... without the key


def test_body_previews_for_debug_logs_are_short_and_single_line() -> None:
    text = preview(b'{"junk": "' + b"x" * 5000 + b'"}\n\n')
    assert len(text) <= BODY_PREVIEW_CHARS + 3 and text.endswith("...") and "\n" not in text


def test_async_retries_after_a_failed_first_try_are_numbered_as_one_loop(
    scripted: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """The first try runs before tenacity is set up; its failure is tenacity's attempt 1 all the same."""
    policy = FAST_RETRIES.__class__(max_attempts=3, base_delay=0.001, max_delay=0.001)
    scripted.add(Answer(503, b"down"), Answer(502, b"down"))
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})

    async def run() -> str:
        info = await AireiterHook(retry_policy=policy).aquery(out_task_id="t1")
        return info.status

    assert asyncio.run(run()) == "processing"
    retries = [line for line in "".join(capfd.readouterr()).splitlines() if "failed (" in line]
    assert len(retries) == 2 and "retry 1 of 2" in retries[0] and "retry 2 of 2" in retries[1]
    assert len(scripted.received) == 3

    scripted.received.clear()
    scripted.add(Answer(503, b"down"), Answer(503, b"down"), Answer(503, b"down"))
    with pytest.raises(AireiterTransientError):
        asyncio.run(run())
    assert len(scripted.received) == 3  # three tries in all, not a first try plus three


# ------------------------------------------------------------------ "not found" is one exact answer


def _business(code: int, message: str) -> Answer:
    return Answer(200, {"ok": True, "statusCode": code, "message": message})


@pytest.mark.parametrize("message", ["api task not found", "  API Task Not Found\n", "Api task not found "])
def test_the_documented_not_found_answer_is_matched_exactly(scripted: ScriptedServer, message: str) -> None:
    scripted.add(_business(400, message))
    assert hook().find_task("t1") is None


@pytest.mark.parametrize("message", ["model not found", "image not found", "task not found", "api task not found: t1"])
def test_another_not_found_answer_is_not_task_not_found(scripted: ScriptedServer, message: str) -> None:
    """Only the documented answer means "no such task"; any other is a refusal (and never "safe to re-send")."""
    scripted.add(_business(400, message))
    with pytest.raises(AireiterInvalidRequestError) as caught:
        hook().find_task("t1")
    assert not isinstance(caught.value, AireiterTaskNotFoundError)


@pytest.mark.parametrize("message", ["model not found", "task not found"])
def test_a_lost_submit_whose_recheck_meets_another_not_found_is_not_sent_again(
    scripted: ScriptedServer, message: str
) -> None:
    from airflow_provider_aireiter.exceptions import AireiterSubmitOutcomeUnknownError

    scripted.add(Answer(502, b"bad gateway"), _business(400, message))
    scripted.default = ok(SUBMITTED)
    with pytest.raises(AireiterSubmitOutcomeUnknownError, match="was not sent again"):
        hook().submit("seedream_v5_lite", {"prompt": "x"}, "t1")
    assert [r.path.rsplit("/", 1)[-1] for r in scripted.received] == ["submit", "query"]


@pytest.mark.parametrize(
    ("code", "message"),
    [(400, "out_task_id already exists"), (400, "duplicate"), (400, "任务已存在"), (400, ""), (409, "conflict"),
     (422, "taken")],
)  # fmt: skip
def test_a_refused_submit_reattaches_when_a_query_finds_the_id_whatever_the_message(
    scripted: ScriptedServer, code: int, message: str
) -> None:
    scripted.add(_business(code, message), ok({"out_task_id": "t1", "status": "processing"}))
    result = hook().submit("seedream_v5_lite", {"prompt": "x"}, "t1")
    assert result.reattached and result.status == "processing"
    assert [r.path.rsplit("/", 1)[-1] for r in scripted.received] == ["submit", "query"]


def test_a_refused_submit_whose_id_is_unknown_raises_the_refusal(scripted: ScriptedServer) -> None:
    scripted.add(_business(400, "prompt already exists in a banned list"), _business(400, "api task not found"))
    with pytest.raises(AireiterInvalidRequestError, match="banned list"):
        hook().submit("seedream_v5_lite", {"prompt": "x"}, "t1")
    assert [r.path.rsplit("/", 1)[-1] for r in scripted.received] == ["submit", "query"]


def test_a_wait_never_asks_back_to_back_whatever_the_settings(scripted: ScriptedServer) -> None:
    """Zero delays and a zero poll interval: failed queries still pause (0.1 s at least) until the deadline."""
    import time

    from airflow_provider_aireiter.retry import MIN_WAIT_PAUSE, AireiterRetryPolicy

    scripted.default = Answer(502, b"bad gateway")
    policy = AireiterRetryPolicy(base_delay=0, max_delay=0)
    started = time.monotonic()
    with pytest.raises(AireiterTimeoutError, match="not answering at the deadline"):
        AireiterHook(retry_policy=policy).wait_for_task("t1", poll_interval=0, timeout=1.0)
    elapsed = time.monotonic() - started
    assert len(scripted.received) <= elapsed / MIN_WAIT_PAUSE + 2


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_a_retry_policy_refuses_delays_that_are_not_finite(value: float) -> None:
    from airflow_provider_aireiter.retry import AireiterRetryPolicy

    with pytest.raises(ValueError, match="max_delay must be a finite number"):
        AireiterRetryPolicy(max_delay=value)
