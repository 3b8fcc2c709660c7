"""How calls are retried and how a wait goes on: one policy, carried out by tenacity on both paths.

Every request is retried by tenacity, and only here: the hook's sync calls, submits (whose lost
answers are re-checked before anything is sent again) and downloads through
:meth:`AireiterRetryPolicy.retrying`; a trigger's single calls through :meth:`AireiterRetryPolicy.acall`.

The queries of a *wait* (the sync wait, the trigger) are retried by :class:`WaitQueries`, set up once
per wait: their budget is time, not tries. A
failed query is asked again after a backoff capped by the wait's poll interval, until an answer
comes, the wait's deadline passes, or (only when the caller sets ``give_up_after``) the service has
not answered for that long. So an outage shorter than the wait does not end the wait. What a wait
logs meanwhile is :class:`OutageLog`'s; what it makes of a task's state, :class:`StatusWatcher`'s.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aireiter.exceptions import (
    AireiterError,
    AireiterRateLimitedError,
    AireiterTaskNotFoundError,
)
from airflow_provider_aireiter.hooks.transport import StatusKind, TaskInfo

if TYPE_CHECKING:
    import tenacity


# ------------------------------------------------------------ the retry policy
T = TypeVar("T")
#: the shortest pause between two failed queries of a wait (seconds)
MIN_WAIT_PAUSE = 0.1
#: while a wait's queries keep failing, one warning at the first failure, then at most one per this many seconds
OUTAGE_WARNING_SECONDS = 60.0


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, AireiterError) and error.retryable


@dataclass(frozen=True)
class AireiterRetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

    Named apart from ``airflow.sdk``'s ``RetryPolicy`` (and BaseOperator's ``retry_policy=``), which
    are about Airflow task retries; this one is about the HTTP calls inside one try.

    :param max_attempts: total tries of one call, the first included.
    :param base_delay: the first wait, in seconds; it doubles with each retry.
    :param max_delay: the longest wait between two tries.
    :param max_retry_after: the longest ``Retry-After`` obeyed (a larger value is capped).
    :param recheck_delay: after a submit whose answer was lost, seconds to wait before asking the
        service whether the submit landed. The service creates the task before it answers, so a lost
        answer (reset, 5xx, garbled body) comes after the task exists; only a submit still being
        processed when the client gave up (a timeout) can appear later, and 3 s covers a submit's
        usual processing time many times over.
    :param recheck_budget: seconds during which that re-check keeps asking when the query itself
        fails. When it is spent the outcome is unknown, and the submit is not sent again.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    recheck_delay: float = 3.0
    recheck_budget: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("base_delay", "max_delay", "max_retry_after", "recheck_delay", "recheck_budget"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds, not negative, got {value}")

    def delay(self, error: BaseException | None, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        jittered = backoff * random.uniform(0.5, 1.0)
        if isinstance(error, AireiterRateLimitedError) and error.retry_after is not None:
            return max(jittered, min(error.retry_after, self.max_retry_after))
        return jittered

    # ------------------------------------------------------------------ tenacity

    def _options(self, what: str, log: Any, max_attempts: int | None, stop_at: float | None) -> dict[str, Any]:
        """``max_attempts=0`` with ``stop_at``: as many tries as fit before ``stop_at``."""
        import tenacity

        attempts = max_attempts if max_attempts is not None else self.max_attempts

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            seconds = self.delay(error, state.attempt_number)
            if stop_at is not None:
                seconds = max(0.0, min(seconds, stop_at - time.time()))
            return seconds

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            message = getattr(error, "message", str(error))
            if attempts:
                log.warning(
                    "%s failed (%s); retry %d of %d in %.1fs", what, message, state.attempt_number, attempts - 1, sleep
                )
            else:
                log.warning("%s failed (%s); asking again in %.1fs", what, message, sleep)

        stop: Any
        if attempts:
            stop = tenacity.stop_after_attempt(attempts)
            if stop_at is not None:
                stop = stop | _stop_at(stop_at)
        elif stop_at is not None:
            stop = _stop_at(stop_at)
        else:
            raise ValueError("max_attempts=0 (bounded by time) needs stop_at")
        return {
            "retry": tenacity.retry_if_exception(_is_retryable),
            "stop": stop,
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def retrying(
        self, *, what: str, log: Any, max_attempts: int | None = None, stop_at: float | None = None
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` for one sync call: retryable provider errors only, re-raised at the end.

        :param max_attempts: tries in all (default: the policy's); 0 with ``stop_at``: bounded by time only.
        :param stop_at: epoch seconds after which no further try starts.
        """
        import tenacity

        return tenacity.Retrying(**self._options(what, log, max_attempts, stop_at))

    def async_retrying(
        self, *, what: str, log: Any, max_attempts: int | None = None, stop_at: float | None = None
    ) -> tenacity.AsyncRetrying:
        """The async twin of :meth:`retrying`."""
        import tenacity

        return tenacity.AsyncRetrying(**self._options(what, log, max_attempts, stop_at))

    # ------------------------------------------------------------------ a wait's queries

    def _wait_options(
        self, what: str, log: Any, stop_at: float, poll_interval: float, give_up_after: float | None
    ) -> tuple[dict[str, Any], OutageLog]:
        """tenacity's options for one query of a wait: retried until an answer, ``stop_at`` (epoch
        seconds), or ``give_up_after`` seconds without an answer; pauses back off up to ``poll_interval``."""
        import tenacity

        outage = OutageLog(log, what, give_up_after)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            seconds = self.delay(error, state.attempt_number)
            if not (isinstance(error, AireiterRateLimitedError) and error.retry_after is not None):
                seconds = min(seconds, max(poll_interval, 0.0))  # a Retry-After the service sent is obeyed
            # Never back to back, whatever the settings: an outage may last the whole wait.
            seconds = max(seconds, min(1.0, max(poll_interval, MIN_WAIT_PAUSE)))
            return max(0.0, min(seconds, stop_at - time.time()))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            outage.failed(error, state.next_action.sleep if state.next_action is not None else None)

        stop: Any = _stop_at(stop_at)
        if give_up_after is not None:
            stop = tenacity.stop_after_delay(give_up_after) | stop
        options = {
            "retry": tenacity.retry_if_exception(_is_retryable),
            "stop": stop,
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }
        return options, outage

    def wait_queries(
        self, *, what: str, log: Any, stop_at: float, poll_interval: float, give_up_after: float | None = None
    ) -> WaitQueries:
        """The retrying of one wait's queries (see the module docstring), set up once for the whole wait."""
        return WaitQueries(
            self, what=what, log=log, stop_at=stop_at, poll_interval=poll_interval, give_up_after=give_up_after
        )

    async def acall(self, call: Callable[[], Awaitable[T]], *, what: str, log: Any, stop_at: float | None = None) -> T:
        """``await call()``, retried if it fails retryably: the policy's tries, none started after ``stop_at``."""
        async for attempt in self.async_retrying(what=what, log=log, stop_at=stop_at):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover


class WaitQueries:
    """The queries of one wait: each retried until it answers, ``stop_at`` (epoch seconds) passes, or,
    when set, ``give_up_after`` seconds go by without an answer; then the last error is raised. Pauses
    back off up to ``poll_interval``. One tenacity object serves every query of the wait."""

    def __init__(
        self,
        policy: AireiterRetryPolicy,
        *,
        what: str,
        log: Any,
        stop_at: float,
        poll_interval: float,
        give_up_after: float | None,
    ) -> None:
        self._options, self.outage = policy._wait_options(what, log, stop_at, poll_interval, give_up_after)
        self._retrying: Any = None
        self._async_retrying: Any = None

    def call(self, call: Callable[[], T]) -> T:
        """``call()`` as one query of the wait."""
        import tenacity

        if self._retrying is None:
            self._retrying = tenacity.Retrying(**self._options)
        for attempt in self._retrying:
            with attempt:
                result = call()
                self.outage.answered()
                return result
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover

    async def acall(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` as one query of the wait."""
        import tenacity

        if self._async_retrying is None:
            self._async_retrying = tenacity.AsyncRetrying(**self._options)
        async for attempt in self._async_retrying:
            with attempt:
                result = await call()
                self.outage.answered()
                return result
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover


class OutageLog:
    """What a wait logs while its queries fail: the first failure, then at most one warning a minute
    with how long the service has not answered; and one line when it answers again.

    Used by the tenacity loop of a wait's query (:class:`WaitQueries`) and by
    the sensor between its pokes (there Airflow's own poke loop does the asking again).
    """

    def __init__(self, log: Any, what: str, give_up_after: float | None = None) -> None:
        self.log = log
        self.what = what
        self.give_up_after = give_up_after
        self.since: float | None = None
        self.failures = 0
        self._last_warning = -math.inf

    @property
    def down_for(self) -> float:
        """Seconds since the first failure of the current outage (0 when the service answers)."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    def failed(self, error: BaseException | None, next_in: float | None) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.failures += 1
        if now - self._last_warning < OUTAGE_WARNING_SECONDS:
            return
        self._last_warning = now
        until = "until the wait's deadline"
        if self.give_up_after is not None:
            until += f" or {self.give_up_after:.0f}s without an answer"
        self.log.warning(
            "%s failed (%s); AIReiter has not answered for %.0fs. Still waiting (%s)%s.",
            self.what[:1].upper() + self.what[1:],
            getattr(error, "message", str(error)),
            now - self.since,
            until,
            f": next query in {next_in:.1f}s" if next_in is not None else "",
        )

    def answered(self) -> None:
        if self.since is not None:
            self.log.info(
                "AIReiter answered %s again after %d failed quer%s over %.0fs.",
                self.what,
                self.failures,
                "y" if self.failures == 1 else "ies",
                self.down_for,
            )
        self.since, self.failures, self._last_warning = None, 0, -math.inf


def _stop_at(epoch: float) -> Callable[[tenacity.RetryCallState], bool]:
    def stop(state: tenacity.RetryCallState) -> bool:
        return time.time() >= epoch

    return stop


# ------------------------------------------- what a wait makes of a task state
class StatusWatcher:
    """Logs a waiter's progress: one line per status change, one warning per unknown status."""

    def __init__(self, log: Any, out_task_id: str, started: float) -> None:
        self.log = log
        self.out_task_id = out_task_id
        self.started = started
        self.last: str | None = None
        self.warned: set[str] = set()
        self.missing_since: float | None = None

    def observe(self, info: TaskInfo | None, *, not_found_grace: float | None = None) -> None:
        """Log what changed; after ``not_found_grace`` seconds of "api task not found", raise
        :class:`AireiterTaskNotFoundError` (a task this wait submitted should not stay unknown)."""
        now = time.time()
        if info is not None:
            self.missing_since = None
        elif self.missing_since is None:
            self.missing_since = now
        elif not_found_grace is not None and now - self.missing_since >= not_found_grace:
            raise AireiterTaskNotFoundError(
                f"AIReiter has answered 'api task not found' for task {self.out_task_id!r} for "
                f"{now - self.missing_since:.0f}s although it was submitted: check that the connection points at "
                "the service the task was submitted to.",
                out_task_id=self.out_task_id,
            )
        status = info.status if info is not None else "<not found>"
        if status == self.last:
            return
        self.last = status
        elapsed = now - self.started
        if info is None:
            self.log.info("AIReiter task %s is not visible yet (%.0fs); still waiting.", self.out_task_id, elapsed)
            return
        self.log.info("AIReiter task %s is %s (%.0fs elapsed)", self.out_task_id, status, elapsed)
        if info.kind is StatusKind.UNKNOWN and status not in self.warned:
            self.warned.add(status)
            self.log.warning(
                "AIReiter reported an unknown status %r for %s; treating it as still running.",
                status,
                self.out_task_id,
            )
