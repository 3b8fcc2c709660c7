"""Every difference between the supported Airflow versions (3.1, 3.2, 3.3) that the provider meets.

The only module that knows about them: the rest of the package imports these names from here and
never checks a version. Each name comes from its newest home first and falls back to where older
Airflow keeps it; the comment says which release moved it. Features that exist only in newer Airflow
are not shimmed: they are simply not used by older versions (see the README's version table).
"""

from __future__ import annotations

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
]
