"""What the tests need from Airflow internals that differ between 3.1, 3.2 and 3.3 (the provider's own
differences live in ``airflow_provider_aireiter/compat.py``). Each comment names the release that changed it.
"""

from __future__ import annotations

from typing import Any

import airflow
from packaging.version import Version

AIRFLOW_VERSION = Version(airflow.__version__).release[:2]

try:  # Airflow 3.2 moved TaskDeferred into the Task SDK
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined]

__all__ = [
    "AIRFLOW_VERSION",
    "TaskDeferred",
    "read_next_kwargs",
    "stored_next_kwargs",
    "worker_encoded",
    "write_dag_to_db",
]


def worker_encoded(kwargs: dict[str, Any]) -> Any:
    """``kwargs`` encoded as a worker's ``DeferTask`` sends trigger kwargs to the Execution API.

    Airflow 3.2 switched that encoding from ``BaseSerialization`` to ``airflow.sdk.serde``.
    """
    try:
        from airflow.sdk.serde import serialize
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serialized_objects import BaseSerialization

        return BaseSerialization.serialize(kwargs)
    return serialize(kwargs)


def stored_next_kwargs(kwargs: dict[str, Any]) -> Any:
    """What to assign to ``TaskInstance.next_kwargs`` for a task that deferred with ``kwargs``.

    Airflow 3.2 made the column plain JSON holding serde data; on 3.1 the column (``ExtendedJSON``)
    encodes a plain dict itself.
    """
    return kwargs if AIRFLOW_VERSION < (3, 2) else worker_encoded(kwargs)


def read_next_kwargs(raw: Any) -> Any:
    """A task instance's stored ``next_kwargs`` decoded (as ``Trigger.submit_event`` wrote them)."""
    try:  # Airflow 3.3.2 named the decoder
        from airflow.models.trigger import _decode_next_kwargs as decode
    except ImportError:
        if AIRFLOW_VERSION < (3, 2):  # Airflow 3.1: the column decoded them already
            return raw
        from airflow.sdk.serde import deserialize as decode  # type: ignore[assignment]  # 3.2 to 3.3.1
    return decode(raw)


def write_dag_to_db(dag: Any, bundle: str, session: Any) -> None:
    """Store an SDK DAG as the dag-processor does: its ``DagModel`` row and its serialized version.

    Airflow 3.2 split ``SerializedDAG`` into ``DagSerialization`` (the encoder) and
    ``airflow.serialization.definitions.dag.SerializedDAG`` (the scheduler's DAG).
    """
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    try:
        from airflow.serialization.definitions.dag import SerializedDAG
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serialized_objects import SerializedDAG  # type: ignore[no-redef]

        DagSerialization = SerializedDAG  # type: ignore[misc,assignment]
    SerializedDAG.bulk_write_to_db(bundle, None, [dag], session=session)
    SerializedDagModel.write_dag(LazyDeserializedDAG(data=DagSerialization.to_dict(dag)), bundle, session=session)


def loaded_plugins() -> tuple[list[Any], dict[str, str]]:
    """The plugins Airflow loads in this process and its plugin import errors.

    Airflow 3.2 replaced the module-level ``plugins`` and ``import_errors`` of ``airflow.plugins_manager``
    (filled by ``ensure_plugins_loaded``) with the cached ``_get_plugins()``.
    """
    from airflow import plugins_manager

    if hasattr(plugins_manager, "_get_plugins"):
        return plugins_manager._get_plugins()
    plugins_manager.ensure_plugins_loaded()  # Airflow 3.1
    return list(plugins_manager.plugins or []), dict(plugins_manager.import_errors)  # type: ignore[attr-defined]
