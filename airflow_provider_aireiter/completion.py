"""The one finish step shared by the operators and the sensor, in sync and deferred mode alike.

check status -> download outputs -> plain-JSON result dict (XCom) -> asset-event extra.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_aireiter.exceptions import (
    AireiterResponseError,
    AireiterTaskFailedError,
    error_from_event,
)
from airflow_provider_aireiter.operators.links import OUTPUT_URL_ATTRIBUTE
from airflow_provider_aireiter.task_types import SubmitResult, TaskInfo
from airflow_provider_aireiter.waiting import raise_if_failed, timeout_error

if TYPE_CHECKING:
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook


def output_directory(output_path: Any) -> Any:
    """``output_path`` (an ``ObjectStoragePath`` or a URI/local path string) as an ``ObjectStoragePath``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(output_path, ObjectStoragePath):
        return output_path
    text = str(output_path)
    if "://" not in text:
        text = "file://" + os.path.abspath(text)
    return ObjectStoragePath(text)


def result_dict(info: TaskInfo, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The small plain-JSON dict returned to XCom: ids, status, credits, times and outputs (never bytes)."""
    return {
        "out_task_id": info.out_task_id,
        "task_id": info.task_id,
        "model": info.model,
        "status": info.status,
        "credits_used": info.credits_used,
        "created_at": info.created_at,
        "completed_at": info.completed_at,
        "outputs": outputs,
    }


def submitted_dict(submitted: SubmitResult, model: str) -> dict[str, Any]:
    """The result for ``wait_for_completion=False``: the ids and status right after submitting."""
    return {
        "out_task_id": submitted.out_task_id,
        "task_id": submitted.task_id,
        "model": model,
        "status": submitted.status,
        "credits_used": None,
        "created_at": submitted.created_at,
        "completed_at": None,
        "outputs": [],
    }


#: event status sent by the callback receiver: "the task may be done, ask the service"
CALLBACK_EVENT_STATUS = "callback"


def log_wake(log: Any, event: Any, deferred_at: float | None) -> None:
    """Say in the task log that the completion callback woke the task, and how long after the deferral."""
    if not (isinstance(event, dict) and event.get("status") == CALLBACK_EVENT_STATUS):
        return
    if deferred_at:
        log.info("Woken by the completion callback after %.1f s.", max(0.0, time.time() - float(deferred_at)))
    else:
        log.info("Woken by the completion callback.")


def resolve_event(hook: AireiterHook, event: Any, out_task_id: str | None) -> TaskInfo | None:
    """The finished task an event stands for; ``None`` when a callback woke us but the task still runs.

    A callback's body is never trusted: after one, the truth comes from the query endpoint.
    """
    if isinstance(event, dict) and event.get("status") == CALLBACK_EVENT_STATUS and out_task_id:
        info = hook.find_task(out_task_id)
        if info is not None and info.is_terminal:
            return info
        return None
    return task_from_event(event, out_task_id)


def task_from_event(event: Any, out_task_id: str | None) -> TaskInfo:
    """Turn a trigger event into a finished task, or raise the error it stands for."""
    if not isinstance(event, dict) or event.get("status") not in ("success", "failed", "timeout", "error"):
        raise AireiterResponseError(
            f"Resumed from the trigger with an unexpected event {str(event)[:200]!r} for {out_task_id!r}; "
            "clear the task to wait again (it reattaches to the remote task).",
            out_task_id=out_task_id,
        )
    status = event["status"]
    task = TaskInfo.model_validate(event["task"]) if event.get("task") else None
    message = str(event.get("message") or "")
    if status == "success" and task is not None:
        return task
    if status == "failed" and task is not None:
        raise_if_failed(task)
    if status == "timeout":
        raise timeout_error(str(out_task_id), None, task)
    if status == "error":
        raise error_from_event(event.get("error"), reason=event.get("reason"), message=message, out_task_id=out_task_id)
    raise AireiterTaskFailedError(message or f"AIReiter task {out_task_id!r} failed.", out_task_id=out_task_id)


def finish(
    hook: AireiterHook,
    info: TaskInfo,
    *,
    output_path: Any,
    context: Any,
    outlets: list[Any] | None,
    log: Any,
) -> dict[str, Any]:
    """Check the final task, download its outputs, record asset extras, and return the result dict."""
    raise_if_failed(info)
    out_id = info.out_task_id or "aireiter"
    outputs: list[dict[str, Any]] = []
    if output_path:
        from airflow_provider_aireiter.hooks.downloads import output_record, write_output_record

        directory = output_directory(output_path)
        ti = context.get("ti") if hasattr(context, "get") else None
        for index, url in enumerate(info.output_urls):
            got = hook.download(url, directory, f"{out_id}_{index}")
            if ti is not None:  # what lets the media view serve this file, and only for this task instance
                map_index = getattr(ti, "map_index", -1)
                record = output_record(ti.dag_id, ti.run_id, ti.task_id, map_index, index, got.size)
                try:
                    write_output_record(directory, got, record)
                except Exception as error:  # the output is stored and paid for: do not fail the task over it
                    log.warning(
                        "Could not write the media view's record next to %s (%s: %s); the file is stored, but "
                        "the media view will not serve it.",
                        got.path,
                        type(error).__name__,
                        error,
                    )
            outputs.append({"url": url, "path": got.path, "content_type": got.content_type, "size": got.size})
    else:
        outputs = [{"url": url, "path": None, "content_type": None, "size": None} for url in info.output_urls]
    result = result_dict(info, outputs)
    task = context.get("task") if hasattr(context, "get") else None
    if task is not None and info.output_urls:
        setattr(task, OUTPUT_URL_ATTRIBUTE, info.output_urls[0])  # read by the "AIReiter output" link
    _record_asset_events(context, outlets, result)
    where = ", ".join(o["path"] for o in outputs if o.get("path")) or "not downloaded (no output_path)"
    log.info(
        "AIReiter task %s %s: %d output(s), %s credits used; files: %s",
        out_id,
        info.status,
        len(outputs),
        "unknown" if info.credits_used is None else f"{info.credits_used:g}",
        where,
    )
    return result


def _record_asset_events(context: Any, outlets: list[Any] | None, result: dict[str, Any]) -> None:
    if not outlets or not hasattr(context, "get"):
        return
    events = context.get("outlet_events")
    if events is None:
        return
    from airflow.sdk import Asset

    extra = {
        "out_task_id": result["out_task_id"],
        "model": result["model"],
        "outputs": [{"url": o["url"], "path": o.get("path")} for o in result["outputs"]],
    }
    for outlet in outlets:
        if isinstance(outlet, Asset):
            events[outlet].extra.update(extra)
