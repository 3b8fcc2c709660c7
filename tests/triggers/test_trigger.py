"""AireiterTaskTrigger against a real scripted server, run in an asyncio loop as the triggerer runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

import pytest

from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger
from tests.compat import worker_encoded
from tests.scripted_server import Answer, ScriptedServer, ok


def run_trigger(trigger: AireiterTaskTrigger, limit: float = 10) -> list[dict[str, Any]]:
    """Collect every event the trigger yields (it must stop by itself)."""

    async def collect() -> list[dict[str, Any]]:
        events = []
        async for event in trigger.run():
            events.append(event.payload)
        return events

    return asyncio.run(asyncio.wait_for(collect(), limit))


def trigger(**kw: Any) -> AireiterTaskTrigger:
    kw.setdefault("deadline", time.time() + 30)
    kw.setdefault("poll_interval", 0.02)
    return AireiterTaskTrigger(out_task_id="t1", **kw)


def test_serialize_round_trips_through_airflow_serde() -> None:
    """The path Airflow takes: the worker's DeferTask encodes the kwargs (``airflow.sdk.serde`` since 3.2),
    they are stored as JSON, and the trigger row decodes them and the triggerer builds the trigger from them."""
    import json

    from airflow.models.trigger import Trigger
    from airflow.sdk.module_loading import import_string

    original = trigger(
        deadline=1_900_000_000.5,
        aireiter_conn_id="my_conn",
        poll_interval=7,
        first_poll_at=1_899_999_000.25,
        resume_not_before=1_899_999_008.25,
        deadline_kind="execution_timeout",
    )
    classpath, kwargs = original.serialize()
    row = Trigger(classpath=classpath, kwargs={})
    row.encrypted_kwargs = json.dumps(worker_encoded(kwargs))  # as the Execution API stores a DeferTask
    restored_kwargs = row.kwargs
    assert restored_kwargs == kwargs
    assert all(v is None or isinstance(v, str | int | float) for v in kwargs.values())  # plain JSON only
    restored = import_string(classpath)(**restored_kwargs)
    assert restored.serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("final", "status"),
    [
        ({"status": "completed", "output": [{"url": "https://cdn/a.png"}], "credits_used": 5}, "success"),
        ({"status": "failed", "error": "content rejected"}, "failed"),
        ({"status": "cancelled"}, "failed"),
    ],
)
def test_one_event_per_terminal_status(scripted: ScriptedServer, final: dict[str, Any], status: str) -> None:
    scripted.add(ok({"out_task_id": "t1", "status": "pending"}), ok({"out_task_id": "t1", "status": "processing"}))
    scripted.default = ok({"out_task_id": "t1", **final})
    events = run_trigger(trigger())
    assert len(events) == 1
    (event,) = events
    assert event["status"] == status and event["wait"]["out_task_id"] == "t1"
    assert event["task"]["status"] == final["status"]
    assert len(scripted.received) == 3


def test_unknown_task_keeps_waiting_until_it_appears(scripted: ScriptedServer) -> None:
    scripted.add(Answer(200, {"ok": True, "statusCode": 400, "message": "api task not found"}))
    scripted.default = ok({"out_task_id": "t1", "status": "completed", "output": []})
    assert run_trigger(trigger())[0]["status"] == "success"


def test_transient_errors_are_retried_then_succeed(scripted: ScriptedServer) -> None:
    scripted.add(Answer(503, b"x"), Answer(429, b"{}", {"Retry-After": "0"}), Answer(200, b"{broken"))
    scripted.default = ok({"out_task_id": "t1", "status": "completed"})
    (event,) = run_trigger(trigger())
    assert event["status"] == "success"
    assert len(scripted.received) == 4


def test_failures_do_not_end_the_wait_however_many(scripted: ScriptedServer, capfd: pytest.CaptureFixture[str]) -> None:
    """Forty failed queries in a row (0.2.0 gave up after five): the wait goes on, warns once, and says
    when the service answers again."""
    scripted.add(*[Answer(502, b"bad gateway")] * 40)
    scripted.default = ok({"out_task_id": "t1", "status": "completed"})
    (event,) = run_trigger(trigger(), limit=30)
    assert event["status"] == "success"
    assert len(scripted.received) == 41
    logged = capfd.readouterr()
    text = logged.out + logged.err
    assert text.count("AIReiter has not answered for") == 1
    assert "answered the query of 't1' again after 40 failed queries" in text


def test_max_outage_gives_an_error_event_that_keeps_the_class(scripted: ScriptedServer) -> None:
    from airflow_provider_aireiter.exceptions import AireiterGarbledResponseError
    from airflow_provider_aireiter.operators.aireiter import task_from_event

    scripted.default = Answer(200, b'{"statusCode": 200, "da')
    started = time.monotonic()
    (event,) = run_trigger(trigger(max_outage=0.5))
    assert 0.5 <= time.monotonic() - started < 5
    assert event["status"] == "error" and event["error"]["class"] == "AireiterGarbledResponseError"
    assert len(scripted.received) > 5
    with pytest.raises(AireiterGarbledResponseError) as rebuilt:
        task_from_event(json.loads(json.dumps(event)), "t1")
    assert rebuilt.value.retryable


def test_a_trigger_row_written_by_0_2_0_still_loads(scripted: ScriptedServer) -> None:
    """Rows of triggers deferred before an upgrade carry max_consecutive_errors: accepted, not used."""
    scripted.add(*[Answer(503, b"down")] * 8)
    scripted.default = ok({"out_task_id": "t1", "status": "completed"})
    old = trigger(max_consecutive_errors=3)
    assert "max_consecutive_errors" not in old.serialize()[1]
    assert run_trigger(old)[0]["status"] == "success"


def test_a_submitted_task_unknown_past_its_grace_gives_an_error(scripted: ScriptedServer) -> None:
    scripted.default = Answer(200, {"ok": True, "statusCode": 400, "message": "api task not found"})
    (event,) = run_trigger(trigger(not_found_grace=0.3))
    assert (event["status"], event["reason"], event["error"]["class"]) == (
        "error",
        "task_not_found",
        "AireiterTaskNotFoundError",
    )


def test_auth_error_is_not_retried(scripted: ScriptedServer) -> None:
    scripted.default = Answer(401, {"ok": True, "statusCode": 401, "message": "unauthorized"})
    (event,) = run_trigger(trigger())
    assert (event["status"], event["reason"]) == ("error", "auth")
    assert len(scripted.received) == 1


def test_deadline_passing_gives_timeout(scripted: ScriptedServer) -> None:
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})
    started = time.time()
    (event,) = run_trigger(trigger(deadline=started + 0.3, poll_interval=0.05))
    assert event["status"] == "timeout" and event["task"]["status"] == "processing"
    assert 0.3 <= time.time() - started < 3


def test_restart_keeps_the_same_deadline(scripted: ScriptedServer) -> None:
    """A triggerer restart rebuilds the trigger from its kwargs: the clock does not start again."""
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})
    first = trigger(deadline=time.time() + 0.6, poll_interval=0.05)

    async def run_briefly() -> None:
        async for _ in first.run():
            raise AssertionError("no event expected before the restart")

    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(run_briefly(), 0.3))  # the triggerer dies after 0.3 s
    _, kwargs = first.serialize()
    restarted = AireiterTaskTrigger(**kwargs)
    resumed_at = time.time()
    (event,) = run_trigger(restarted)
    assert event["status"] == "timeout"
    assert time.time() - resumed_at < 0.55  # only what was left of the 0.6 s, not a new 0.6 s


def test_first_query_waits_for_first_poll_at(scripted: ScriptedServer) -> None:
    """The deferring task has just asked: the trigger's first query waits for ``first_poll_at``."""
    scripted.default = ok({"out_task_id": "t1", "status": "completed", "output": []})
    started = time.time()
    (event,) = run_trigger(trigger(first_poll_at=started + 0.4))
    assert event["status"] == "success"
    assert time.time() - started >= 0.4
    assert len(scripted.received) == 1


def test_first_poll_at_in_the_past_or_after_the_deadline(scripted: ScriptedServer) -> None:
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})
    started = time.time()
    # Restarted long after it was deferred: it asks at once (then times out at its deadline).
    (event,) = run_trigger(trigger(first_poll_at=started - 60, deadline=started + 0.2, poll_interval=5))
    assert event["status"] == "timeout" and len(scripted.received) == 2
    # A first poll after the deadline: one query at the deadline, then the timeout event.
    started = time.time()
    (event,) = run_trigger(trigger(first_poll_at=started + 60, deadline=started + 0.3))
    assert event["status"] == "timeout" and event["task"]["status"] == "processing"
    assert 0.3 <= time.time() - started < 3 and len(scripted.received) == 3


def test_on_kill_says_the_remote_task_keeps_running(
    scripted: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})
    asyncio.run(trigger().on_kill())
    assert "keeps running" in "".join(capfd.readouterr())


def test_on_kill_without_an_answer_still_warns(capfd: pytest.CaptureFixture[str]) -> None:
    asyncio.run(trigger(aireiter_conn_id="no_such_connection").on_kill())
    assert "keeps running" in "".join(capfd.readouterr())


def test_a_callback_wake_is_not_reported_as_a_kill(scripted: ScriptedServer, capfd: pytest.CaptureFixture[str]) -> None:
    """Airflow calls on_kill when the callback receiver resumed the task: the remote task is done, no warning."""
    scripted.default = ok({"out_task_id": "t1", "status": "completed", "output": [{"url": "https://cdn/a.png"}]})
    asyncio.run(trigger().on_kill())
    out = "".join(capfd.readouterr())
    assert "keeps running" not in out
    assert "resumed by its completion callback" in out


def test_no_event_before_the_deferral_has_settled(scripted: ScriptedServer) -> None:
    """The remote task is already done at the first poll: the event still waits for resume_not_before."""
    scripted.default = ok({"out_task_id": "t1", "status": "completed", "output": [{"url": "https://cdn/a.png"}]})
    not_before = time.time() + 1.0
    seen: list[float] = []

    async def collect() -> None:
        async for event in trigger(resume_not_before=not_before).run():
            seen.append(time.time())
            assert event.payload["status"] == "success"

    asyncio.run(asyncio.wait_for(collect(), 20))
    assert len(seen) == 1 and seen[0] >= not_before
    assert len(scripted.received) == 1  # it held the event, it did not poll again meanwhile


class _FrozenClockLoop(asyncio.SelectorEventLoop):
    """A real event loop whose clock can be held still, recording when each timer is due."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen: float | None = None
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.frozen if self.frozen is not None else super().time()

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:  # type: ignore[override]
        self.timers.append((when, callback))
        return super().call_at(when, callback, *args, context=context)


def _is_sleep(callback: Any) -> bool:
    """Whether a timer is an ``asyncio.sleep`` (how the trigger waits between polls)."""
    return getattr(callback, "__name__", "") == "_set_result_unless_cancelled"


def _wake_ups(scripted: ScriptedServer, now: float, **kwargs: Any) -> tuple[list[float], int]:
    """Where a trigger puts its first wake-up, on a loop whose clock stands at ``now``, and the queries
    it sent before that.

    A poll is real I/O, handled by the loop turns that ``sleep(0)`` gives (a timed sleep would never end
    while the clock stands); the trigger is cancelled once it has gone to sleep.
    """
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})
    before = len(scripted.received)
    loop = _FrozenClockLoop()

    async def main() -> None:
        loop.frozen = now
        waiting = asyncio.ensure_future(anext(trigger(**kwargs).run()))
        give_up = time.monotonic() + 60
        while not any(_is_sleep(callback) for _, callback in loop.timers) and time.monotonic() < give_up:
            await asyncio.sleep(0)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting

    try:
        loop.run_until_complete(main())
    finally:
        loop.frozen = None
        loop.run_until_complete(loop.shutdown_asyncgens())  # closes the loop's aiohttp session
        loop.close()
    return [when for when, callback in loop.timers if _is_sleep(callback)], len(scripted.received) - before


def _next_wake_up(scripted: ScriptedServer, now: float, **kwargs: Any) -> float:
    """Where a trigger that polls at once puts its wake-up after that first poll."""
    (when,), queries = _wake_ups(scripted, now, **kwargs)
    assert queries == 1
    return when


@pytest.mark.parametrize(("poll_interval", "step"), [(10.0, 10.0), (30.0, 30.0), (2.0, 2.0), (0.0, 0.1)])
def test_a_trigger_polls_every_interval_give_or_take_a_tenth(
    scripted: ScriptedServer, poll_interval: float, step: float
) -> None:
    """After a poll, the next comes one interval later, jittered by at most a tenth of it.

    A poll interval of 0 (a sensor's ``poke_interval`` may be 0) polls every tenth of a second.
    """
    now = 5000.37
    when = _next_wake_up(scripted, now, poll_interval=poll_interval, deadline=time.time() + 3600)
    assert now + 0.9 * step <= when <= now + 1.1 * step


def test_waits_deferred_together_spread_their_first_polls_over_one_interval(scripted: ScriptedServer) -> None:
    """60 waits deferred in the same instant (a mapped task): their first polls are spread over the whole
    interval after ``first_poll_at``, none before it, never one burst to the paid service."""
    now, interval = 5000.0, 10.0
    first_poll_at = time.time() + interval
    seen = []
    for _ in range(60):
        (when,), queries = _wake_ups(
            scripted, now, poll_interval=interval, first_poll_at=first_poll_at, deadline=time.time() + 3600
        )
        assert queries == 0  # nothing is sent before the first poll is due
        seen.append(when - now)
    assert all(interval - 0.5 <= s <= 2 * interval + 0.5 for s in seen)  # within one interval after first_poll_at
    per_second = [sum(1 for s in seen if k <= s - interval < k + 1) for k in range(int(interval))]
    assert max(seen) - min(seen) >= 0.7 * interval  # spread over the interval...
    assert max(per_second) <= 20  # ... not bunched: a third of them at most in any one second of it


def test_the_wake_up_before_the_deadline_is_the_deadline(scripted: ScriptedServer) -> None:
    """A 30 s poll with 5 s left: it wakes at the deadline (to a tenth of a second), not 30 s away."""
    now = 5000.37
    when = _next_wake_up(scripted, now, poll_interval=30.0, deadline=time.time() + 5.0)
    # The deadline (less however long the set-up and the first poll took), not 27 to 33 s away.
    assert now + 1.0 <= when <= now + 5.1


def test_an_infinite_poll_interval_polls_only_at_the_deadline(scripted: ScriptedServer) -> None:
    """``poll_interval=inf``: after the first poll the trigger sleeps until its deadline."""
    now = 5000.37
    when = _next_wake_up(scripted, now, poll_interval=math.inf, deadline=time.time() + 5.0)
    assert now + 1.0 <= when <= now + 5.1


def test_an_outage_running_into_the_deadline_is_a_timeout(scripted: ScriptedServer) -> None:
    """Queries failing until the deadline: the wait timed out (the operator's retry reattaches), not an error."""
    scripted.default = Answer(503, b"upstream down")
    (event,) = run_trigger(trigger(deadline=time.time() + 1.0))
    assert event["status"] == "timeout" and event["reason"] == "timeout"
    assert "HTTP 503" in event["message"]
