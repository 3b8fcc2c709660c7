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
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

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
