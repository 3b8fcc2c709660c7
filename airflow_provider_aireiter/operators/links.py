"""The operator extra link to the first generated file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

#: XCom key holding the first output URL of a finished task
OUTPUT_URL_XCOM_KEY = "aireiter_output_url"

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey  # type: ignore[attr-defined]


class AireiterOutputLink(BaseOperatorLink):
    """ "AIReiter output": opens the first output URL of a finished generation task."""

    name = "AIReiter output"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=OUTPUT_URL_XCOM_KEY)
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
