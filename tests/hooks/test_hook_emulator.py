"""The hook against the emulator: a submit whose outcome is unknown never creates a second task."""

from __future__ import annotations

import pytest

from airflow_provider_aireiter.emulator import Emulator, Fault
from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError, AireiterTransientError
from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from tests.conftest import FAST_RETRIES

PARAMS = {"prompt": "a red fox in snow", "aspect_ratio": "16:9", "resolution": "2K"}


def test_reset_after_processing_reattaches_instead_of_resending(aireiter_connection: Emulator) -> None:
    aireiter_connection.faults.script("submit", ["reset_after_processing"])
    result = AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, "lost-answer")
    assert result.reattached and result.out_task_id == "lost-answer"
    assert aireiter_connection.submit_count("lost-answer") == 1
    assert aireiter_connection.submit_request_count("lost-answer") == 1  # never sent twice


def test_garbled_answer_after_processing_reattaches(aireiter_connection: Emulator) -> None:
    aireiter_connection.faults.script("submit", ["malformed_json"])
    result = AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, "garbled")
    assert result.reattached
    assert aireiter_connection.submit_request_count("garbled") == 1


def test_answer_slower_than_the_timeout_asks_before_sending_again(aireiter_connection: Emulator) -> None:
    """The slow original is processed after the re-send: still one task (the service refuses the duplicate)."""
    aireiter_connection.faults.script("submit", [Fault("slow", seconds=1.5)])
    hook = AireiterHook(retry_policy=FAST_RETRIES, timeout=0.5)
    result = hook.submit("seedream_v5_lite", PARAMS, "slow-answer")
    assert result.out_task_id == "slow-answer"
    assert aireiter_connection.query_count("slow-answer") >= 1  # asked before re-sending
    import time

    time.sleep(1.5)  # let the slow original finish on the server
    assert aireiter_connection.submit_count("slow-answer") == 1


@pytest.mark.parametrize("fault", ["http_503", "http_502", "busy_429", "http_429"])
def test_failed_submit_that_did_not_create_a_task_is_sent_again(aireiter_connection: Emulator, fault: str) -> None:
    aireiter_connection.faults.script("submit", [fault])
    result = AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, f"again-{fault}")
    assert not result.reattached and result.status == "pending"
    assert aireiter_connection.submit_count(f"again-{fault}") == 1
    assert aireiter_connection.submit_request_count(f"again-{fault}") == 2


def test_http_429_with_retry_after_is_retried(aireiter_connection: Emulator) -> None:
    aireiter_connection.faults.script("query", [Fault("http_429", retry_after=0), Fault("http_500")])
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    hook.submit("seedream_v5_lite", PARAMS, "busy")
    assert hook.query(out_task_id="busy").status in ("pending", "processing")
    assert aireiter_connection.query_count("busy") == 3


def test_connection_refused_is_transient_and_bounded(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import conn_json

    base_url = aireiter_connection.base_url
    aireiter_connection.stop()
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(base_url))
    with pytest.raises(AireiterTransientError, match="could not connect"):
        AireiterHook(retry_policy=FAST_RETRIES).query(out_task_id="x")


def test_service_side_validation_is_an_invalid_request(aireiter_connection: Emulator) -> None:
    with pytest.raises(AireiterInvalidRequestError, match="aspect_ratio"):
        AireiterHook(retry_policy=FAST_RETRIES).submit(
            "seedream_v5_lite", {"prompt": "x", "aspect_ratio": "5:1"}, "bad"
        )
    assert aireiter_connection.submit_count("bad") == 0
    assert aireiter_connection.submit_request_count("bad") == 1  # 400 is not retried


def test_metadata_is_echoed_and_balance_is_charged(aireiter_connection: Emulator) -> None:
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    before = aireiter_connection.balance
    hook.submit("seedream_v5_lite", PARAMS, "meta", metadata={"dag_id": "d", "run": 1})
    aireiter_connection.complete_task("meta")
    info = hook.query(out_task_id="meta")
    assert info.metadata == {"dag_id": "d", "run": 1}
    assert info.credits_used == 10 and aireiter_connection.balance == before - 10
    assert info.task_id and info.task_id.startswith("order_")
