"""When and how long to wait before retrying a call (shared by the sync and async hook paths)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from airflow_provider_aireiter.exceptions import AireiterError, AireiterRateLimitedError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

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

    def should_retry(self, error: AireiterError, attempt: int) -> bool:
        """Whether to try again after ``error`` on try number ``attempt`` (1-based)."""
        return error.retryable and attempt < self.max_attempts

    def delay(self, error: AireiterError, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        jittered = backoff * random.uniform(0.5, 1.0)
        if isinstance(error, AireiterRateLimitedError) and error.retry_after is not None:
            return max(jittered, min(error.retry_after, self.max_retry_after))
        return jittered
