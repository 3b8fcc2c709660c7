"""Every error the provider can raise keeps its class, fields and retryability across a deferral.

The path is the one Airflow takes: the trigger puts the error into its event, the event is stored in
the task instance's ``next_kwargs`` (encoded as this Airflow line encodes them), read back on the
worker, and ``execute_complete`` raises what it stands for.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_aireiter.compat import AirflowFailException
from airflow_provider_aireiter.exceptions import AireiterError, _error_classes
from airflow_provider_aireiter.operators.aireiter import task_from_event
from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger
from tests.compat import read_next_kwargs, stored_next_kwargs

#: fields some classes take beyond the message, set to values unlike their defaults
EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "AireiterTransientError": {"maybe_processed": False},
    "AireiterGarbledResponseError": {"maybe_processed": False},
    "AireiterRateLimitedError": {"retry_after": 7.5},
    "AireiterTaskFailedError": {"task_id": "order_1", "remote_error": "content rejected", "status": "failed"},
    "AireiterWatchedTaskFailedError": {"task_id": "order_2", "remote_error": "expired", "status": "expired"},
}

CLASSES = sorted(_error_classes().items())


def test_every_error_class_of_the_provider_is_covered() -> None:
    names = {name for name, _ in CLASSES}
    assert len(names) >= 15, names
    assert {"AireiterGarbledResponseError", "AireiterResponseError", "AireiterHtmlPageError"} <= names


def _through_a_deferral(error: AireiterError) -> BaseException:
    trigger = AireiterTaskTrigger(out_task_id="t1", deadline=time.time() + 60)
    event = trigger._event("error", f"Stopped: {error.message}", reason=error.reason.value, error=error.to_event())
    stored = stored_next_kwargs({"event": event.payload})
    resumed = read_next_kwargs(stored)["event"]
    with pytest.raises(AireiterError) as raised:
        task_from_event(resumed, "t1")
    return raised.value


@pytest.mark.parametrize(("name", "cls"), CLASSES, ids=[name for name, _ in CLASSES])
def test_an_error_keeps_its_class_and_fields_across_a_deferral(name: str, cls: type[AireiterError]) -> None:
    original = cls("what happened", service_code=502, out_task_id="t1", **EXTRA_FIELDS.get(name, {}))
    if hasattr(original, "transport_detail"):
        original.transport_detail = "connection reset"
    rebuilt = _through_a_deferral(original)
    assert type(rebuilt) is cls
    assert rebuilt.retryable == original.retryable
    assert isinstance(rebuilt, AirflowFailException) == isinstance(original, AirflowFailException)
    assert str(rebuilt) == str(original) == "what happened"
    assert vars(rebuilt) == vars(original)


def test_an_event_from_0_2_0_is_rebuilt_from_its_reason() -> None:
    """An event written before an upgrade has no ``error``: the reason code picks the class, as before."""
    from airflow_provider_aireiter.exceptions import AireiterAuthError

    with pytest.raises(AireiterAuthError):
        task_from_event({"status": "error", "reason": "auth", "message": "bad key", "task": None}, "t1")
