"""``out_task_id``: the caller-chosen id that makes a retried task reattach instead of paying twice."""

from __future__ import annotations

import hashlib
import re

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError

MAX_LENGTH = 64
_ALLOWED = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def check_out_task_id(value: object) -> str:
    """Return ``value`` if it is a valid id: 1 to 64 characters of ``[A-Za-z0-9_-]``."""
    if not isinstance(value, str) or not _ALLOWED.match(value):
        raise AireiterInvalidRequestError(
            f"out_task_id={value!r} is not allowed: use 1 to {MAX_LENGTH} characters of letters, digits, '_' and '-'."
        )
    return value


def default_out_task_id(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """A readable id, stable across retries of one task instance and unique across runs and map indexes.

    ``af-<dag and task, shortened>-<hash of dag_id, task_id, run_id, map_index>``, at most 59 characters,
    so an attempt suffix (``-r12``) still fits in 64.
    """
    digest = hashlib.sha256(f"{dag_id}\x1f{task_id}\x1f{run_id}\x1f{map_index}".encode()).hexdigest()[:24]
    slug = _SLUG_UNSAFE.sub("-", f"{dag_id}-{task_id}").strip("-_")[:30].strip("-_") or "task"
    return f"af-{slug}-{digest}"


def attempt_id(base: str, attempt: int) -> str:
    """The id of attempt ``attempt`` (1 = ``base``); later attempts follow a remote failure."""
    if attempt <= 1:
        return base
    suffix = f"-r{attempt}"
    return base[: MAX_LENGTH - len(suffix)] + suffix
