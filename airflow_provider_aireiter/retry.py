"""When and how long to wait before retrying a call: one policy, carried out by tenacity on both paths.

Every request is retried in exactly one place: the hook's sync calls and downloads through
:meth:`AireiterRetryPolicy.retrying`, the trigger's polls through :meth:`AireiterRetryPolicy.acall`
(its consecutive-failure budget), and the submit's re-check through the same waits. The submit
itself is not a plain retry (see ``AireiterHook.submit``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aireiter.exceptions import AireiterError, AireiterRateLimitedError

if TYPE_CHECKING:  # tenacity is imported where a call is retried, not when a DAG file is parsed
    import tenacity


T = TypeVar("T")


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
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def delay(self, error: BaseException | None, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        jittered = backoff * random.uniform(0.5, 1.0)
        if isinstance(error, AireiterRateLimitedError) and error.retry_after is not None:
            return max(jittered, min(error.retry_after, self.max_retry_after))
        return jittered

    # ------------------------------------------------------------------ tenacity

    def _options(
        self, what: str, log: Any, max_attempts: int | None, max_wait: float | None, stop_at: float | None
    ) -> dict[str, Any]:
        """``max_attempts=0`` with ``stop_at``: as many tries as fit before ``stop_at``."""
        import tenacity

        attempts = max_attempts if max_attempts is not None else self.max_attempts

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            seconds = self.delay(error, state.attempt_number)
            if max_wait is not None:
                seconds = min(seconds, max_wait)
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

        return tenacity.Retrying(**self._options(what, log, max_attempts, None, stop_at))

    def async_retrying(
        self,
        *,
        what: str,
        log: Any,
        max_attempts: int | None = None,
        max_wait: float | None = None,
        stop_at: float | None = None,
    ) -> tenacity.AsyncRetrying:
        """The async twin of :meth:`retrying` (``max_wait`` caps each pause, ``stop_at`` is an epoch deadline)."""
        import tenacity

        return tenacity.AsyncRetrying(**self._options(what, log, max_attempts, max_wait, stop_at))

    async def acall(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        what: str,
        log: Any,
        max_wait: float | None = None,
        stop_at: float | None = None,
    ) -> T:
        """``await call()``, retried by :meth:`async_retrying` if it fails retryably.

        The first try runs before any tenacity object exists: a trigger's poll nearly always succeeds,
        and setting tenacity up cost about a quarter of the CPU of the whole poll
        (``benchmarks/triggerer_capacity.py``). A first try that fails is handed to tenacity as its
        attempt 1, so the waits, the stop conditions and the log lines are those of one tenacity loop.
        """
        try:
            return await call()
        except AireiterError as error:
            if not error.retryable:
                raise
            first_failure: AireiterError | None = error
        retrying = self.async_retrying(what=what, log=log, max_wait=max_wait, stop_at=stop_at)
        async for attempt in retrying:
            with attempt:
                if first_failure is not None:
                    failure, first_failure = first_failure, None
                    raise failure
                return await call()
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover


def _stop_at(epoch: float) -> Callable[[tenacity.RetryCallState], bool]:
    def stop(state: tenacity.RetryCallState) -> bool:
        return time.time() >= epoch

    return stop
