"""The operator extra link to the first generated file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

#: operator attribute holding the first output URL once the task has finished
OUTPUT_URL_ATTRIBUTE = "aireiter_output_url"

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey  # type: ignore[attr-defined]


class AireiterOutputLink(BaseOperatorLink):
    """ "AIReiter output": opens the first output URL of a finished generation task."""

    name = "AIReiter output"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        # Airflow 3 calls this once, in the task's own process when it ends (also when it defers), and
        # stores the answer for the UI. The finish step has set the URL on the operator by then; no
        # lookup is made, so a deferral or a failure logs no "XCom not found" error.
        url = getattr(operator, OUTPUT_URL_ATTRIBUTE, None)
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
