"""The hook against the emulator: a submit whose answer was lost is never sent again blindly.

Every test here runs the emulator with ``duplicate_policy="create_new"``: a second submit of the same
``out_task_id`` would create (and charge) a second task, so "not paid twice" is checked on the submits
the emulator *received*, not on the emulator refusing duplicates for us.
"""

from __future__ import annotations

import dataclasses

import pytest

from airflow_provider_aireiter.exceptions import (
    AireiterInvalidRequestError,
    AireiterSubmitOutcomeUnknownError,
    AireiterTransientError,
)
from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from airflow_provider_aireiter.testing.emulator import Emulator, Fault
from tests.conftest import FAST_RETRIES

PARAMS = {"prompt": "a red fox in snow", "aspect_ratio": "16:9", "resolution": "2K"}

pytestmark = pytest.mark.aireiter_emulator(duplicate_policy="create_new")

#: every shape of "the submit was processed but its answer did not arrive"
LOST_ANSWERS = ["reset_after_processing", "malformed_json"]


@pytest.mark.parametrize("fault", LOST_ANSWERS)
def test_lost_answer_is_rechecked_and_reattached(aireiter_connection: Emulator, fault: str) -> None:
    aireiter_connection.faults.script("submit", [fault])
    result = AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, f"lost-{fault}")
    assert result.reattached and result.out_task_id == f"lost-{fault}"
    assert aireiter_connection.submit_request_count(f"lost-{fault}") == 1  # never sent twice
    assert aireiter_connection.submit_count(f"lost-{fault}") == 1


@pytest.mark.parametrize("fault", LOST_ANSWERS)
@pytest.mark.parametrize("outage", ["http_503", "reset_after_processing", "malformed_json", "http_429"])
def test_lost_answer_then_recheck_outage_is_never_resent(
    aireiter_connection: Emulator, fault: str, outage: str
) -> None:
    """The answer is lost, then every re-check fails for longer than the budget: unknown, not re-sent."""
    out_id = f"outage-{fault}-{outage}"
    aireiter_connection.faults.script("submit", [fault])
    aireiter_connection.faults.script("query", [Fault(outage, retry_after=0) if outage == "http_429" else outage] * 200)
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    with pytest.raises(AireiterSubmitOutcomeUnknownError) as caught:
        hook.submit("seedream_v5_lite", PARAMS, out_id)
    message = str(caught.value)
    assert out_id in message and "next try" in message and "not sent again" in message
    assert caught.value.out_task_id == out_id
    assert aireiter_connection.submit_request_count(out_id) == 1
    assert aireiter_connection.query_count(out_id) >= 2  # it kept asking within the budget

    # The task's next try: the outage is over, the look-up finds the task, nothing is submitted.
    aireiter_connection.faults.clear()
    found = AireiterHook(retry_policy=FAST_RETRIES).find_task(out_id)
    assert found is not None and found.out_task_id == out_id
    assert aireiter_connection.submit_request_count(out_id) == 1
    assert aireiter_connection.submit_count(out_id) == 1


def test_recheck_that_recovers_reattaches(aireiter_connection: Emulator) -> None:
    """Answer lost, the first two re-checks fail, the third answers: reattached, one submit."""
    aireiter_connection.faults.script("submit", ["reset_after_processing"])
    aireiter_connection.faults.script("query", ["http_502", "malformed_json"])
    result = AireiterHook(retry_policy=dataclasses.replace(FAST_RETRIES, recheck_budget=5)).submit(
        "seedream_v5_lite", PARAMS, "recovers"
    )
    assert result.reattached
    assert aireiter_connection.submit_request_count("recovers") == 1
    assert aireiter_connection.query_count("recovers") == 3


def test_answer_slower_than_the_timeout_waits_before_asking(aireiter_connection: Emulator) -> None:
    """The client gives up at 0.5 s while the service still works on the submit (1.5 s): the re-check
    waits ``recheck_delay`` (2 s here) and finds it, so the submit is not sent a second time."""
    aireiter_connection.faults.script("submit", [Fault("slow", seconds=1.5)])
    policy = dataclasses.replace(FAST_RETRIES, recheck_delay=2.0)
    hook = AireiterHook(retry_policy=policy, timeout=0.5)
    result = hook.submit("seedream_v5_lite", PARAMS, "slow-answer")
    assert result.reattached
    assert aireiter_connection.submit_request_count("slow-answer") == 1
    assert aireiter_connection.submit_count("slow-answer") == 1


@pytest.mark.parametrize("fault", ["http_503", "http_502"])
def test_server_error_without_a_task_is_sent_again_after_asking(aireiter_connection: Emulator, fault: str) -> None:
    """A 5xx may or may not have been processed: asked first; "not found" makes a re-send safe."""
    aireiter_connection.faults.script("submit", [fault])
    result = AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, f"again-{fault}")
    assert not result.reattached and result.status == "pending"
    assert aireiter_connection.query_count(f"again-{fault}") == 1
    assert aireiter_connection.submit_request_count(f"again-{fault}") == 2
    assert aireiter_connection.submit_count(f"again-{fault}") == 1


@pytest.mark.parametrize("fault", ["busy_429", "http_429"])
def test_refused_submit_is_sent_again_without_asking(aireiter_connection: Emulator, fault: str) -> None:
    """A 429 is a refusal: nothing was created, so no re-check is needed."""
    aireiter_connection.faults.script("submit", [Fault(fault, retry_after=0) if fault == "http_429" else fault])
    result = AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, f"refused-{fault}")
    assert not result.reattached
    assert aireiter_connection.query_count(f"refused-{fault}") == 0
    assert aireiter_connection.submit_request_count(f"refused-{fault}") == 2
    assert aireiter_connection.submit_count(f"refused-{fault}") == 1


@pytest.mark.aireiter_emulator(duplicate_policy="reject")
def test_already_exists_reattaches(aireiter_connection: Emulator) -> None:
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    hook.submit("seedream_v5_lite", PARAMS, "exists")
    again = hook.submit("seedream_v5_lite", PARAMS, "exists")
    assert again.reattached and again.out_task_id == "exists"
    assert aireiter_connection.submit_count("exists") == 1


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
    with pytest.raises(AireiterTransientError, match="could not connect") as caught:
        AireiterHook(retry_policy=FAST_RETRIES).submit("seedream_v5_lite", PARAMS, "refused")
    assert not isinstance(caught.value, AireiterSubmitOutcomeUnknownError)  # nothing was sent: no doubt


def test_service_side_validation_is_an_invalid_request(aireiter_connection: Emulator) -> None:
    with pytest.raises(AireiterInvalidRequestError, match="aspect_ratio"):
        AireiterHook(retry_policy=FAST_RETRIES).submit(
            "seedream_v5_lite", {"prompt": "x", "aspect_ratio": "5:1"}, "bad"
        )
    assert aireiter_connection.submit_count("bad") == 0
    assert aireiter_connection.submit_request_count("bad") == 1  # 400 is not retried


def test_retry_policy_comes_from_the_connection_extras(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv(
        "AIRFLOW_CONN_AIREITER_DEFAULT",
        conn_json(
            aireiter_connection.base_url,
            aireiter_connection.api_key,
            max_attempts=2,
            retry_base_delay=0.01,
            recheck_delay=0,
            recheck_budget=0.2,
        ),
    )
    policy = AireiterHook().retry_policy
    assert (policy.max_attempts, policy.base_delay, policy.recheck_delay, policy.recheck_budget) == (2, 0.01, 0, 0.2)
    aireiter_connection.faults.script("submit", ["http_503", "http_503", "http_503"])
    with pytest.raises(AireiterTransientError, match="HTTP 503"):
        AireiterHook().submit("seedream_v5_lite", PARAMS, "two-sends")
    assert aireiter_connection.submit_request_count("two-sends") == 2


def test_metadata_is_echoed_and_balance_is_charged(aireiter_connection: Emulator) -> None:
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    before = aireiter_connection.balance
    hook.submit("seedream_v5_lite", PARAMS, "meta", metadata={"dag_id": "d", "run": 1})
    aireiter_connection.complete_task("meta")
    info = hook.query(out_task_id="meta")
    assert info.metadata == {"dag_id": "d", "run": 1}
    assert info.credits_used == 10 and aireiter_connection.balance == before - 10
    assert info.task_id and info.task_id.startswith("order_")
