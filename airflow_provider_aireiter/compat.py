"""Every difference between the supported Airflow versions (3.1, 3.2, 3.3) that the provider meets.

The only module that knows about them: the rest of the package imports these names from here and
never checks a version. Each name comes from its newest home first and falls back to where older
Airflow keeps it; the comment says which release moved it. Features that exist only in newer Airflow
are not shimmed: they are simply not used by older versions (see the README's version table). Where
Airflow's ``Stats`` lives differs too, so the provider's metrics are sent from here (:func:`metric`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

try:  # Airflow 3.2 (Task SDK 1.2) added airflow.sdk.configuration; 3.1 only has the core conf
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[no-redef]

try:  # Airflow 3.2 moved the task-facing exceptions into airflow.sdk.exceptions (3.3 warns on the old path)
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
    )
except ImportError:  # Airflow 3.1: the core module, which the 3.1 Task SDK's BaseSensorOperator also raises
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
    )

try:  # Airflow 3.2 added the Task SDK's AirflowPlugin (what providers should subclass)
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # Airflow 3.1
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[no-redef,assignment]


def task_state_store(context: Any) -> Any | None:
    """The task instance's task state store (``context["task_state_store"]``, Airflow 3.3's AIP-103),
    or ``None`` on 3.1 and 3.2, whose context has none (and outside a task: a context that is no dict)."""
    return context.get("task_state_store") if isinstance(context, Mapping) else None


def hook_lineage_collector() -> Any:
    """Airflow's hook-level lineage collector (a no-op one unless a lineage reader such as OpenLineage is set up)."""
    try:  # Airflow 3.2 moved it into the Task SDK
        from airflow.sdk.lineage import get_hook_lineage_collector
    except ImportError:  # Airflow 3.1
        from airflow.lineage.hook import get_hook_lineage_collector  # type: ignore[no-redef]
    return get_hook_lineage_collector()


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowPlugin",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "conf",
    "hook_lineage_collector",
    "metric",
    "stats",
    "task_state_store",
]


@functools.cache
def stats() -> Any:
    """Airflow's ``Stats`` (StatsD, DogStatsD or OpenTelemetry, as ``[metrics]`` configures it).

    Imported at the first metric, not with this module: a DAG parse never pays for it.
    """
    try:  # Airflow 3.2 (Task SDK 1.2) moved it into the Task SDK; 3.3 deprecates airflow.stats
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow 3.1: the core module (the 3.1 Task SDK uses it too)
        from airflow.stats import Stats  # type: ignore[no-redef]
    return Stats


#: every metric name of the provider starts with this (Airflow puts its ``statsd_prefix`` before it)
METRIC_PREFIX = "aireiter"
_NOT_IN_A_SEGMENT = re.compile(r"[^A-Za-z0-9_-]")


def metric(name: str, value: float | timedelta = 1, **tags: str) -> None:
    """Send ``aireiter.<name>.<tag value>...``: a timing for a ``timedelta`` value, else a counter.

    Each tag value becomes a name segment too (plain StatsD drops tags), with any character a
    segment cannot hold replaced by ``_``, at most 64 characters. A counter of a whole number is sent
    as an int (``10|c``), a fractional one as it is (``2.5|c``). A metric never fails the caller.
    """
    stat = f"{METRIC_PREFIX}.{name}"
    for v in tags.values():
        stat += "." + _NOT_IN_A_SEGMENT.sub("_", str(v))[:64]
    try:
        if isinstance(value, timedelta):
            stats().timing(stat, value, tags=tags)
        else:
            count = int(value) if float(value).is_integer() else value
            stats().incr(stat, count, tags=tags)
    except Exception:  # a metric is never worth a failed task
        logging.getLogger(__name__).debug("Could not send metric %s", stat, exc_info=True)
