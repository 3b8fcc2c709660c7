"""Generation operators: a generic one for any AIReiter model and one per documented model.

Each operator submits one task (or reattaches to it after a retry), waits on the worker or deferred
in the triggerer (:class:`AireiterWaitMixin`, shared with the sensor), downloads the outputs to
``output_path`` (:func:`finish`) and returns a small plain-JSON dict.

A model operator declares its arguments once, by the typed signature of its ``__init__``
(:func:`model_arguments` reads it, with the wire names beside it). Every such argument is a template
field; values are validated at parse time where they are literals (also in ``.partial()``) and again
after rendering, against the model's rules in :mod:`airflow_provider_aireiter.api_types`. The
run-time parts (the hook, the trigger) are imported inside the methods that use them: a DAG file
importing this module does not pay for them.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, NoReturn
from urllib.parse import urlsplit

from airflow.sdk import BaseOperator, BaseOperatorLink

from airflow_provider_aireiter.api_types import (
    VEO31_CHANNELS,
    attempt_id,
    check_out_task_id,
    default_out_task_id,
    model_kind,
    validate_params,
)
from airflow_provider_aireiter.compat import conf, metric, task_state_store
from airflow_provider_aireiter.exceptions import (
    AireiterInvalidRequestError,
    AireiterResponseError,
    AireiterTaskFailedError,
    counts_errors,
    error_from_event,
    raise_if_failed,
    timeout_error,
)
from airflow_provider_aireiter.get_provider_info import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

    from airflow_provider_aireiter.exceptions import AireiterTimeoutError
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook
    from airflow_provider_aireiter.hooks.transport import SubmitResult, TaskInfo
    from airflow_provider_aireiter.triggers.aireiter import WaitState


# ---------------------------------------------------------------------------- the extra link
#: operator attribute holding the first output URL once the task has finished
OUTPUT_URL_ATTRIBUTE = "aireiter_output_url"


class AireiterOutputLink(BaseOperatorLink):
    """ "AIReiter output": opens the first output URL of a finished generation task."""

    name = "AIReiter output"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        # Airflow 3 calls this once, in the task's own process when it ends (also when it defers), and
        # stores the answer for the UI. The finish step has set the URL on the operator by then; no
        # lookup is made, so a deferral or a failure logs no "XCom not found" error.
        url = getattr(operator, OUTPUT_URL_ATTRIBUTE, None)
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""


# ---------------------------------------------------------------------------- waiting (operators and sensor)


class AireiterWaitMixin:
    """Waiting for one AIReiter task, for an operator (``BaseOperator``) or a sensor: check, defer, resume.

    On a worker a wait polls at its poll interval; deferred, it waits in the triggerer on
    :class:`~airflow_provider_aireiter.triggers.aireiter.AireiterTaskTrigger` (at the callback fallback
    interval when a completion callback is expected) and resumes in ``execute_complete`` with the
    trigger's event, or the callback receiver's, each carrying the wait's
    :class:`~airflow_provider_aireiter.triggers.aireiter.WaitState`.

    A failed query never ends a wait by itself (see :mod:`airflow_provider_aireiter.retry`): a check
    that fails just before a deferral defers all the same, and a callback wake that cannot reach the
    service waits again. The wait ends at an absolute deadline: its own ``timeout``, or the task's
    ``execution_timeout`` counted from the task's start, whichever comes first (Airflow does not apply
    ``execution_timeout`` to a deferred task itself). Which of the two ended it decides the error:
    ``execution_timeout`` gives Airflow's ``AirflowTaskTimeout``; the wait's ``timeout`` gives
    :meth:`timeout_exception` (operators: ``AireiterTimeoutError``, whose retry reattaches; the sensor:
    ``AirflowSensorTimeout``, never retried, as in poke mode).

    The class using it sets ``aireiter_conn_id``, ``output_path``, ``callback_poll_interval`` and
    ``max_outage``, and may override :meth:`timeout_exception`, :meth:`expects_callback` and
    ``not_found_grace``.
    """

    aireiter_conn_id: str
    output_path: Any
    callback_poll_interval: float
    #: seconds without an answer from the service after which a wait fails; ``None``: until the deadline
    max_outage: float | None
    #: seconds of "api task not found" after which a wait fails (``None``: wait for the task to appear)
    not_found_grace: float | None = None
    #: this try reattached to a task that had already finished (an earlier try may have counted it)
    finished_before_this_try: bool = False
    log: Any

    def init_wait(
        self,
        aireiter_conn_id: str,
        output_path: Any,
        callback_poll_interval: float,
        max_outage: float | timedelta | None,
        deferrable: bool,
    ) -> None:
        """Set the wait's arguments, shared by the operators' and the sensor's ``__init__``."""
        self.aireiter_conn_id = aireiter_conn_id
        self.output_path = output_path
        self.callback_poll_interval = callback_poll_interval
        self.max_outage = max_outage.total_seconds() if isinstance(max_outage, timedelta) else max_outage
        self.deferrable = deferrable

    def _hook(self) -> AireiterHook:
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook

        return AireiterHook(self.aireiter_conn_id)

    def poll_seconds(self) -> float:
        """Seconds between queries while waiting on a worker."""
        raise NotImplementedError

    def expects_callback(self, hook: AireiterHook) -> bool:
        """Whether a completion callback can wake this task (then deferred waits poll only as a fallback)."""
        return hook.settings.callbacks_enabled

    def timeout_exception(self, error: AireiterTimeoutError) -> BaseException:
        """What a wait that reached its own ``timeout`` raises (operators: the error itself)."""
        return error

    def wait_deadline(self, context: Context, wait_seconds: float) -> tuple[float, str]:
        """The absolute end of the wait and which bound it is (``timeout`` or ``execution_timeout``)."""
        from airflow_provider_aireiter.triggers.aireiter import EXECUTION_TIMEOUT, WAIT_TIMEOUT

        now = time.time()
        deadline, kind = now + wait_seconds, WAIT_TIMEOUT
        execution_timeout = getattr(self, "execution_timeout", None)
        if execution_timeout is not None:
            start = getattr(context.get("ti"), "start_date", None)
            started = start.timestamp() if start is not None else now
            bound = started + execution_timeout.total_seconds()
            if bound < deadline:
                deadline, kind = bound, EXECUTION_TIMEOUT
        return deadline, kind

    def defer_wait(
        self,
        hook: AireiterHook,
        out_task_id: str,
        deadline: float,
        deadline_kind: str,
        estimated_credits: float | None = None,
    ) -> NoReturn:
        """Wait in the triggerer; ``execute_complete`` resumes with the event, which carries the wait."""
        from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger, WaitState, resume_not_before

        interval = self.poll_seconds()
        fallback = self.expects_callback(hook)  # the trigger's polls are only the fallback
        if fallback:
            interval = max(interval, float(self.callback_poll_interval))
        now = time.time()
        wait = WaitState(
            out_task_id=out_task_id,
            deadline=deadline,
            aireiter_conn_id=self.aireiter_conn_id,
            poll_interval=interval,
            first_poll_at=now + interval,  # this task has just asked
            resume_not_before=resume_not_before(now),
            deadline_kind=deadline_kind,
            max_outage=self.max_outage,
            not_found_grace=self.not_found_grace,
            deferred_at=now,
            fallback=fallback,
            estimated_credits=estimated_credits,
        )
        # The trigger's own absolute deadline bounds the wait (see the class docstring).
        self.defer(trigger=AireiterTaskTrigger(**wait.to_json()), method_name="execute_complete", timeout=None)  # type: ignore[attr-defined]
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def check_then_defer(
        self,
        context: Context,
        hook: AireiterHook,
        out_task_id: str,
        wait_seconds: float,
        known: TaskInfo | None,
        estimated_credits: float | None = None,
    ) -> TaskInfo:
        """A finished task is returned, a running one is deferred (this does not return).

        ``known`` is the task as just read (a reattach); otherwise it is asked once, and a check that
        gets no answer defers all the same: the trigger asks again.
        """
        from airflow_provider_aireiter.exceptions import AireiterError

        info = known
        if info is None:
            try:
                info = hook.find_task(out_task_id, retry=False)
            except AireiterError as error:
                if not error.retryable:
                    raise
                self.log.warning(
                    "Could not ask AIReiter about %s before deferring (%s); the trigger will.", out_task_id, error
                )
        if info is not None and info.is_terminal:
            return info
        self.defer_wait(hook, out_task_id, *self.wait_deadline(context, wait_seconds), estimated_credits)

    def resume(self, hook: AireiterHook, event: Any, legacy: Mapping[str, Any]) -> tuple[TaskInfo, WaitState]:
        """The finished task after a resume, and the wait; a callback for a task still running defers again.

        ``legacy``: the defer kwargs of a task deferred by 0.3.0 or earlier (the wait is in the event now).
        """
        from airflow_provider_aireiter.compat import AirflowTaskTimeout
        from airflow_provider_aireiter.exceptions import AireiterError, AireiterTimeoutError
        from airflow_provider_aireiter.triggers.aireiter import CALLBACK_EVENT_STATUS, EXECUTION_TIMEOUT

        wait = self._wait_of(event, legacy)
        self.note_lineage(out_task_id=wait.out_task_id, estimated_credits=wait.estimated_credits)
        callback = isinstance(event, dict) and event.get("status") == CALLBACK_EVENT_STATUS
        if callback:
            waited = f" after {max(0.0, time.time() - wait.deferred_at):.1f} s" if wait.deferred_at else ""
            self.log.info("Woken by the completion callback%s.", waited)
        try:
            if callback:  # a callback's body is never trusted: the query endpoint says the truth
                info = hook.find_task(wait.out_task_id)
                info = info if info is not None and info.is_terminal else None
            else:
                info = task_from_event(event, wait.out_task_id)
        except AireiterTimeoutError as error:
            if wait.deadline_kind == EXECUTION_TIMEOUT:
                raise AirflowTaskTimeout(
                    f"execution_timeout reached while waiting in the triggerer. {error.message}"
                ) from error
            raise self.timeout_exception(error) from None
        except AireiterError as error:
            if not (error.retryable and callback):
                self.note_lineage(status=getattr(error, "status", None))  # a remote failure's status
                raise
            # A callback woke the task, but the service does not answer: the trigger rides it out.
            self.log.warning("Woken by a callback, but AIReiter did not answer (%s); waiting again.", error)
            info = None
        if info is None:
            self.log.info(
                "Woken by a callback, but AIReiter task %s is still running; waiting again.", wait.out_task_id
            )
            self.defer_wait(hook, wait.out_task_id, wait.deadline, wait.deadline_kind, wait.estimated_credits)
        return info, wait

    def _wait_of(self, event: Any, legacy: Mapping[str, Any]) -> WaitState:
        """The wait an event carries; for events and defer kwargs of 0.3.0 and earlier, rebuilt from them."""
        from airflow_provider_aireiter.triggers.aireiter import WaitState

        if isinstance(event, dict) and isinstance(event.get("wait"), dict):
            return WaitState.from_json(event["wait"])
        fields = {k: v for k, v in legacy.items() if v is not None}
        if isinstance(event, dict):  # dag.test() passes the event without the defer kwargs
            fields.setdefault("out_task_id", event.get("out_task_id"))
            if event.get("deadline_kind"):
                fields["deadline_kind"] = event["deadline_kind"]
        fields.setdefault("out_task_id", getattr(self, "out_task_id", None))
        fields.setdefault("deadline", time.time())
        if not fields["out_task_id"]:
            raise AireiterResponseError(
                f"Resumed from the trigger with an event that names no task: {str(event)[:200]!r}; clear the "
                "task to wait again (it reattaches to the remote task)."
            )
        return WaitState.from_json(fields)

    def finish(
        self, hook: AireiterHook, info: TaskInfo, context: Context, estimated_credits: float | None = None
    ) -> dict[str, Any]:
        """Check the final task, download its outputs and return the result dict (see :func:`finish`)."""
        outlets = getattr(self, "outlets", None)
        self.note_lineage(
            out_task_id=info.out_task_id, model=info.model, status=info.status, credits_used=info.credits_used
        )
        result = finish(
            hook,
            info,
            output_path=self.output_path,
            context=context,
            outlets=outlets,
            log=self.log,
            seen_finishing=not self.finished_before_this_try,
            estimated_credits=estimated_credits,
        )
        self.note_lineage(outputs=result["outputs"])
        return result

    # ------------------------------------------------------------ OpenLineage (when its provider is installed)

    def note_lineage(self, **facts: Any) -> None:
        """Record what the OpenLineage facets report, as the task learns it.

        A task resumed from the triggerer runs on a new operator: the resumed path records again.
        """
        self.__dict__.setdefault("aireiter_lineage", {}).update((k, v) for k, v in facts.items() if v is not None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: reference images given by URL in; files stored under ``output_path`` (else the URLs) out."""
        return self.openlineage_facets()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage for a failed task: the same, with what was known when it failed."""
        return self.openlineage_facets()

    def openlineage_facets(self) -> Any:
        """The inputs, outputs and run facets (the remote task's id, model, status and credits); no secret."""
        from airflow.providers.openlineage.extractors import OperatorLineage
        from attrs import define
        from openlineage.client.event_v2 import Dataset
        from openlineage.client.facet_v2 import RunFacet, external_query_run

        @define
        class AireiterRunFacet(RunFacet):
            """The AIReiter task: model, status (as the service says it), credits used and estimated."""

            model: str | None = None
            status: str | None = None
            creditsUsed: float | None = None  # OpenLineage facets name their fields in camelCase
            estimatedCredits: float | None = None

        def url_dataset(url: str) -> Dataset:  # no user info, query or fragment: they may hold a signature
            parts = urlsplit(url)
            port = f":{parts.port}" if parts.port else ""
            return Dataset(namespace=f"{parts.scheme}://{parts.hostname}{port}", name=parts.path or "/")

        def stored_dataset(path: str) -> Dataset:
            stored = output_directory(path)
            return Dataset(namespace=stored.namespace, name=stored.key if stored.bucket else "/" + stored.key)

        known = self.__dict__.get("aireiter_lineage", {})
        params = self.build_params() if hasattr(self, "build_params") else None
        images = [
            url
            for key, value in (params.items() if isinstance(params, dict) else ())
            if "image" in key
            for url in (value if isinstance(value, list) else [value])
            if isinstance(url, str) and url.startswith(("http://", "https://"))
        ]
        outputs = [
            stored_dataset(o["path"]) if o.get("path") else url_dataset(o["url"]) for o in known.get("outputs", [])
        ]
        run_facets: dict[str, Any] = {}
        if known.get("out_task_id"):
            run_facets["externalQuery"] = external_query_run.ExternalQueryRunFacet(
                externalQueryId=known["out_task_id"], source="aireiter"
            )
        model = known.get("model") or getattr(self, "resolved_model", None)
        run_facets["aireiter"] = AireiterRunFacet(
            model=model,
            status=known.get("status"),
            creditsUsed=known.get("credits_used"),
            estimatedCredits=known.get("estimated_credits"),
        )
        return OperatorLineage(inputs=[url_dataset(u) for u in images], outputs=outputs, run_facets=run_facets)


# ---------------------------------------------------------------------------- finishing
def output_directory(output_path: Any) -> Any:
    """``output_path`` (an ``ObjectStoragePath`` or a URI/local path string) as an ``ObjectStoragePath``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(output_path, ObjectStoragePath):
        return output_path
    text = str(output_path)
    if "://" not in text:
        text = "file://" + os.path.abspath(text)
    return ObjectStoragePath(text)


def result_dict(info: TaskInfo, outputs: list[dict[str, Any]], estimated_credits: float | None) -> dict[str, Any]:
    """The small plain-JSON dict returned to XCom: ids, status, credits, times and outputs (never bytes).

    The one place that builds it; ``estimated_credits`` is the submit's estimate, carried to here on
    every path (``None`` when unknown: the sensor, or a reattach on Airflow before 3.3).
    """
    return {
        "out_task_id": info.out_task_id,
        "task_id": info.task_id,
        "model": info.model,
        "status": info.status,
        "credits_used": info.credits_used,
        "estimated_credits": estimated_credits,
        "created_at": info.created_at,
        "completed_at": info.completed_at,
        "outputs": outputs,
    }


def submitted_dict(submitted: SubmitResult, model: str) -> dict[str, Any]:
    """The result for ``wait_for_completion=False``: the ids and status right after submitting."""
    from airflow_provider_aireiter.hooks.transport import TaskInfo

    info = TaskInfo(
        out_task_id=submitted.out_task_id,
        task_id=submitted.task_id,
        status=submitted.status,
        model=model,
        created_at=submitted.created_at,
    )
    return result_dict(info, [], submitted.estimated_credits)


#: the key of the task state store (Airflow 3.3 and newer) under which a task keeps its remote task and credits
TASK_STATE_KEY = "aireiter"


def remember(context: Any, log: Any, out_task_id: str | None, estimated: float | None, used: float | None) -> None:
    """Keep the remote task id and the credits in the task instance's task state store, where the UI
    shows them (its "Task State Store" tab) and a retry finds them; skipped where Airflow has no such
    store (before 3.3). A failed write is a warning: the task has paid for its work, it goes on.
    """
    store = task_state_store(context)
    if store is None:
        return
    value = {"out_task_id": out_task_id, "estimated_credits": estimated, "credits_used": used}
    try:
        store.set(TASK_STATE_KEY, value)
    except Exception as error:
        log.warning("Could not write %s to the task state store (%s: %s).", value, type(error).__name__, error)


def remembered(context: Any, out_task_id: str) -> dict[str, Any] | None:
    """What a previous try of this task instance kept in the task state store for ``out_task_id``, else ``None``."""
    store = task_state_store(context)
    try:
        kept = store.get(TASK_STATE_KEY) if store is not None else None
    except Exception:  # no answer: as if nothing was kept (only the estimate and the metrics depend on it)
        return None
    return kept if isinstance(kept, dict) and kept.get("out_task_id") == out_task_id else None


def task_from_event(event: Any, out_task_id: str) -> TaskInfo:
    """Turn a trigger event into a finished task, or raise the error it stands for."""
    from airflow_provider_aireiter.hooks.transport import TaskInfo

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
        raise timeout_error(out_task_id, None, task)
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
    seen_finishing: bool = True,
    estimated_credits: float | None = None,
) -> dict[str, Any]:
    """Check the final task, download its outputs, record asset extras, and return the result dict.

    ``seen_finishing``: this try waited for the task to finish (not reattached to a finished one), so
    its credits and completion time are counted here, once per remote task, before any download.
    """
    raise_if_failed(info)
    if seen_finishing:
        model = info.model or "unknown"
        if info.credits_used is not None:
            metric("credits.used", info.credits_used, model=model)
        took = _completion_time(info)
        if took is not None:
            metric("completion_time", took, model=model)
    out_id = info.out_task_id or "aireiter"
    outputs: list[dict[str, Any]] = []
    if output_path:
        from airflow_provider_aireiter.hooks.aireiter import output_record, write_output_record

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
    result = result_dict(info, outputs, estimated_credits)
    remember(context, log, out_id, estimated_credits, info.credits_used)
    task = context.get("task") if hasattr(context, "get") else None
    if task is not None and info.output_urls:
        setattr(task, OUTPUT_URL_ATTRIBUTE, info.output_urls[0])  # read by the "AIReiter output" link
    _record_asset_events(context, outlets, result)
    where = ", ".join(o["path"] for o in outputs if o.get("path")) or "not downloaded (no output_path)"
    log.info(
        "AIReiter task %s %s: %d output(s), %s credits used (estimated %s); files: %s",
        out_id,
        info.status,
        len(outputs),
        "unknown" if info.credits_used is None else f"{info.credits_used:g}",
        "unknown" if estimated_credits is None else f"{estimated_credits:g}",
        where,
    )
    return result


def _completion_time(info: TaskInfo) -> timedelta | None:
    """From submit to completion by the service's own clock (``created_at`` to ``completed_at``)."""
    try:
        created, completed = (
            datetime.fromisoformat(str(t).replace("Z", "+00:00")) for t in (info.created_at, info.completed_at)
        )
        took = completed - created
    except (TypeError, ValueError):  # a time missing or unreadable (one naive and one aware: TypeError)
        return None
    return took if took >= timedelta(0) else None


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


# ---------------------------------------------------------------------------- the operators
# The run-time modules (the hook, pydantic models, the finish step) are imported inside the methods
# that use them: a DAG file importing this module should not pay for them at every parse.

#: default seconds to wait, by model kind
DEFAULT_TIMEOUTS = {"image": 15 * 60.0, "video": 60 * 60.0}
#: default seconds between status queries, by model kind
DEFAULT_POLL_INTERVALS = {"image": 5.0, "video": 15.0}
#: seconds between fallback queries while a completion callback is expected
DEFAULT_CALLBACK_POLL_INTERVAL = 60.0
#: attempt ids tried past the try number when earlier ones are skipped (completed with
#: ``regenerate_finished``, or made from another request)
_MAX_EXTRA_ATTEMPTS = 50
#: seconds a submitted task may stay unknown to the service before the wait fails
NOT_FOUND_GRACE_SECONDS = 300.0


def _seconds(value: float | timedelta | None, default: float) -> float:
    if value is None:
        return default
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _as_int(value: Any) -> Any:
    """A rendered template ``"5"`` as ``5``; anything else unchanged (and validated as it is)."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return value


def _as_bool(value: Any) -> Any:
    """A rendered template ``"True"``/``"false"`` as a bool; anything else unchanged."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


#: a model argument's annotation (its first word) -> how a rendered template string becomes its value
_COERCE: dict[str, Callable[[Any], Any]] = {"int": _as_int, "bool": _as_bool}


class ModelArg(NamedTuple):
    """One argument of a model operator.

    :param name: the operator's keyword argument (a template field).
    :param param: the key it is sent as in ``params``; ``None`` for an argument that is not a param
        (Veo's ``channel`` picks the model id).
    :param coerce: turns a rendered template string into the value's type (``"5"`` -> 5).
    """

    name: str
    param: str | None
    coerce: Callable[[Any], Any] | None = None


def model_arguments(wire: Mapping[str, str | None] | None = None) -> Callable[[Callable[..., None]], Any]:
    """Declare a model operator's arguments once: by the signature of the ``__init__`` it decorates.

    Each keyword-only argument (but ``extra_params``) is a param, sent under its own name unless
    ``wire`` renames it (``None``: not a param, such as Veo's ``channel``); an ``int`` or ``bool``
    annotation reads a rendered template string as one. The decorated body is never run.
    """

    def decorate(declared: Callable[..., None]) -> Any:
        parameters = inspect.signature(declared).parameters.values()
        declared_args = [p for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "extra_params"]
        table = tuple(
            ModelArg(p.name, (wire or {}).get(p.name, p.name), _COERCE.get(str(p.annotation).split(" ")[0]))
            for p in declared_args
        )
        defaults = {p.name: None if p.default is p.empty else p.default for p in declared_args}

        @functools.wraps(declared)
        def __init__(self: AireiterModelOperator, **kwargs: Any) -> None:
            values = {name: kwargs.pop(name, default) for name, default in defaults.items()}
            extra_params = kwargs.pop("extra_params", None)
            AireiterModelOperator.__init__(self, model_values=values, extra_params=extra_params, **kwargs)

        __init__.model_args = table  # type: ignore[attr-defined]
        return __init__

    return decorate


class AireiterGenerateOperator(AireiterWaitMixin, BaseOperator):
    """Generate images or videos with any AIReiter model.

    :param model: the model id, with its channel suffix if any (``"nano_banana_pro"``, ``"sora2_plus"``).
    :param model_params: the model's params, sent as given (templated). Known models are validated first.
    :param aireiter_conn_id: the ``aireiter`` connection (templated).
    :param out_task_id: your id for the remote task (templated). By default derived from dag_id, task_id,
        run_id and map_index: stable across retries, so a retry reattaches instead of paying again.
    :param callback_url: where AIReiter POSTs on completion. By default, when the connection has a
        callback base URL and secret, a signed URL to this Airflow's callback receiver.
    :param use_callback: set ``False`` to never send a callback URL.
    :param metadata: a dict AIReiter returns unchanged in query results (templated).
    :param wait_for_completion: wait for the task to finish (default); ``False`` returns right after submitting.
    :param poll_interval: seconds between status queries (default 5 for images, 15 for videos).
    :param callback_poll_interval: seconds between fallback queries of a deferred task while a callback
        is expected (default 60). A task waiting on a worker always polls at ``poll_interval``.
    :param timeout: longest wait in seconds or a timedelta (default 15 min for images, 60 min for videos).
        ``execution_timeout``, when set and sooner, bounds a deferred wait too.
    :param max_outage: give up (a retryable error) when the service has not answered for this long,
        in seconds or a timedelta. Default ``None``: failed queries are asked again until the wait's
        deadline, so an outage shorter than the wait does not fail the task.
    :param output_path: where to store the outputs (templated): an ``ObjectStoragePath`` or a URI such as
        ``file:///data/media/{{ ds }}/`` or ``s3://bucket/prefix/``. Files are named ``<out_task_id>_<n>.<ext>``.
    :param regenerate_finished: when the task is cleared or re-run after its remote task *completed*,
        generate anew (a new attempt id, new credits) instead of returning the same media. Remote
        tasks still running are always reattached. Default ``False``: reattach, never pay twice.
    :param deferrable: wait in the triggerer instead of on a worker (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = (
        "model",
        "model_params",
        "out_task_id",
        "metadata",
        "output_path",
        "callback_url",
        "aireiter_conn_id",
    )
    template_fields_renderers = {"model_params": "json", "metadata": "json"}
    operator_extra_links = (AireiterOutputLink(),)
    ui_color = "#f3e8ff"

    #: the table of a model operator's own arguments (empty for the generic operator)
    model_args: ClassVar[tuple[ModelArg, ...]] = ()
    #: how errors name the params (``model_params.x`` here, ``params.x`` for model operators)
    params_field: ClassVar[str] = "model_params"

    def __init__(
        self,
        *,
        model: str,
        model_params: dict[str, Any] | None = None,
        aireiter_conn_id: str = DEFAULT_CONN_ID,
        out_task_id: str | None = None,
        callback_url: str | None = None,
        use_callback: bool = True,
        metadata: dict[str, Any] | None = None,
        wait_for_completion: bool = True,
        poll_interval: float | None = None,
        callback_poll_interval: float = DEFAULT_CALLBACK_POLL_INTERVAL,
        timeout: float | timedelta | None = None,
        output_path: Any = None,
        regenerate_finished: bool = False,
        max_outage: float | timedelta | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.model_params = model_params if model_params is not None else {}
        self.init_wait(aireiter_conn_id, output_path, callback_poll_interval, max_outage, deferrable)
        self.out_task_id = out_task_id
        self.callback_url = callback_url
        self.use_callback = use_callback
        self.metadata = metadata
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.wait_timeout = timeout
        self.regenerate_finished = regenerate_finished
        self.not_found_grace = NOT_FOUND_GRACE_SECONDS
        self.check_values(self._values(), at_parse_time=True)

    # -------------------------------------------------------------- parameters (one piece of code)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Airflow's ``partial()``, with the literal arguments validated at parse time like an unmapped task's."""
        cls.check_values(kwargs, at_parse_time=True, absent_unknown=True)
        return super().partial(**kwargs)  # type: ignore[misc]

    def _values(self) -> dict[str, Any]:
        names = ["model", "model_params", "out_task_id", "metadata", "extra_params"]
        names += [arg.name for arg in self.model_args]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    @classmethod
    def model_for(cls, values: Mapping[str, Any]) -> Any:
        """The model id the values select (Veo's ``channel`` picks it)."""
        return values.get("model")

    @classmethod
    def params_for(cls, values: Mapping[str, Any]) -> Any:
        """The params to send for these values: ``model_params`` as given."""
        params = values.get("model_params")
        return dict(params) if isinstance(params, dict) else params

    @classmethod
    def check_values(
        cls, values: Mapping[str, Any], *, at_parse_time: bool, absent_unknown: bool = False
    ) -> dict[str, Any] | None:
        """Validate what is known; return the params to send (``None`` when the model is not known yet).

        :param at_parse_time: values holding Jinja or an XCom are left for the check after rendering.
        :param absent_unknown: arguments not in ``values`` are not known yet (``.partial()``: they come
            from ``.expand()``).
        """
        metadata = values.get("metadata")
        if metadata is not None and not _is_lazy(metadata) and not isinstance(metadata, dict):
            raise AireiterInvalidRequestError(f"metadata must be a dict, got {type(metadata).__name__}.")
        out_task_id = values.get("out_task_id")
        if out_task_id is not None and not (at_parse_time and _is_lazy(out_task_id)):
            check_out_task_id(out_task_id)
        model = cls.model_for(values)
        if at_parse_time and (model is None or _is_lazy(model)):
            return None
        if at_parse_time and absent_unknown and not cls.model_args and "model_params" not in values:
            return None  # the generic operator's params come from .expand()
        params = cls.params_for(values)
        if at_parse_time and not isinstance(params, dict) and _is_lazy(params):
            return None  # a template or an XComArg for all of them: checked after rendering
        unknown: set[str] = set()
        if at_parse_time and isinstance(params, dict):
            unknown = {key for key, value in params.items() if _is_lazy(value)}
            if absent_unknown:
                unknown |= {arg.param for arg in cls.model_args if arg.param and arg.name not in values}
        return validate_params(str(model), params, field_prefix=cls.params_field, unknown=frozenset(unknown))

    def build_params(self) -> Any:
        """The params this task sends, from its current (rendered) values, before validation."""
        return self.params_for(self._values())

    @property
    def resolved_model(self) -> str:
        return str(self.model_for(self._values()))

    @property
    def kind(self) -> str:
        return model_kind(self.resolved_model)

    def poll_seconds(self) -> float:
        return _seconds(self.poll_interval, DEFAULT_POLL_INTERVALS[self.kind])

    def expects_callback(self, hook: AireiterHook) -> bool:
        return self.use_callback and not self.callback_url and hook.settings.callbacks_enabled

    # -------------------------------------------------------------- submitting

    def _base_out_task_id(self, context: Context) -> str:
        if self.out_task_id:
            return check_out_task_id(self.out_task_id)
        ti = context["ti"]
        return default_out_task_id(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))

    def _callback_url(self, hook: AireiterHook, out_task_id: str) -> str | None:
        if self.callback_url:
            return self.callback_url
        settings = hook.settings
        if not self.use_callback:
            return None
        _warn_once_if_half_configured(self.log, settings)
        if not settings.callbacks_enabled:
            return None
        settings.check_callback_settings()  # before anything is sent: a bad URL would fail the submit
        from airflow_provider_aireiter.hooks.aireiter import callback_url

        assert settings.callback_base_url is not None and settings.callback_secret is not None
        return callback_url(settings.callback_base_url, settings.callback_secret, out_task_id, settings.conn_id)

    def _submit_or_reattach(
        self, hook: AireiterHook, params: dict[str, Any], context: Context
    ) -> tuple[SubmitResult, TaskInfo | None]:
        """Reattach to a task an earlier try created from the same request; submit only when there is none.

        Try ``n`` looks at ids ``base``, ``base-r2`` ... ``base-r<n>`` in order: the first unknown one is
        submitted; a running or completed one made from this request is reattached. It moves on to the
        next id past one that failed remotely, one made from another request (the DAG changed before the
        task was cleared: :meth:`_request_changes`), and, with ``regenerate_finished``, one that
        completed; past ``base-r<n>`` only for the last two. Returns the task as read when reattached.
        """
        from airflow_provider_aireiter.hooks.transport import StatusKind, SubmitResult

        base = self._base_out_task_id(context)
        try_number = max(1, int(getattr(context.get("ti"), "try_number", 1) or 1))
        last: TaskInfo | None = None
        moved_on = False  # the last id was skipped for a reason that may go past this try's own id
        for attempt in range(1, try_number + _MAX_EXTRA_ATTEMPTS + 1):
            if attempt > try_number and not moved_on:
                break
            candidate = attempt_id(base, attempt)
            existing = hook.find_task(candidate)
            if existing is None:
                return self._submit(hook, params, candidate), None
            last, moved_on = existing, False
            if existing.kind is StatusKind.FAILURE:
                self.log.info(
                    "Earlier attempt %s failed remotely (%s); trying the next attempt id.", candidate, existing.error
                )
                continue
            changes = self._request_changes(existing, params)
            if changes:
                self.log.warning(
                    "AIReiter task %s (%s) was made from another request: %s changed since. Generating anew "
                    "under the next attempt id (new credits)%s.",
                    candidate,
                    existing.status,
                    ", ".join(changes),
                    "" if existing.is_terminal else "; the earlier task keeps running and is charged if it completes",
                )
                moved_on = True
                continue
            if existing.kind is StatusKind.SUCCESS and self.regenerate_finished:
                self.log.info("Attempt %s completed earlier; regenerate_finished: generating anew.", candidate)
                moved_on = True
                continue
            self.log.info(
                "AIReiter already has task %s (%s) from an earlier try%s: reattaching, nothing is submitted.",
                candidate,
                existing.status,
                " with the same model and params"
                if changes is not None
                else " (the service echoes no request to compare with this one)",
            )
            metric("reattach", model=self.resolved_model)
            return SubmitResult.reattached_to(existing, candidate), existing
        if moved_on:
            raise AireiterInvalidRequestError(
                f"No free attempt id left after {base!r}; set out_task_id to a new value."
            )
        # This try's own id already failed (a manual re-run of a failed task).
        assert last is not None
        from airflow_provider_aireiter.exceptions import raise_if_failed

        raise_if_failed(last)
        raise AssertionError("unreachable: the last attempt failed")  # pragma: no cover

    def _request_changes(self, existing: TaskInfo, params: dict[str, Any]) -> list[str] | None:
        """What differs between the request the service echoes for ``existing`` and this try's.

        ``None`` when the service echoes no request. A false "changed" would pay again on every retry,
        so only what is certainly different counts: the model (a channel suffix the echo may drop
        aside), and each param this try sends that the echo also holds, compared as JSON with
        surrounding spaces and the number/string spelling of a scalar ignored. A param the echo leaves
        out or holds as null, a ``data:`` URI (the service may keep the upload elsewhere), and a param
        the echo holds but this try does not send (the service may echo defaults) are not compared.
        """
        echoed = existing.request
        if not echoed:
            return None
        changes: list[str] = []
        model = echoed.get("model")
        mine = self.resolved_model
        if isinstance(model, str) and model and not _same_model(model, mine):
            changes.append(f"model ({model!r} -> {mine!r})")
        sent = echoed.get("params")
        if isinstance(sent, dict):
            ours = json.loads(json.dumps(params, default=str))
            for key in sorted(ours):
                value, theirs = ours[key], sent.get(key)
                if theirs is None or value is None or _is_data_uri(value) or _is_data_uri(theirs):
                    continue
                if not _same_value(value, theirs):
                    changes.append(f"{self.params_field}.{key}")
        return changes

    def _submit(self, hook: AireiterHook, params: dict[str, Any], out_task_id: str) -> SubmitResult:
        callback_url = self._callback_url(hook, out_task_id)
        result = hook.submit(
            self.resolved_model, params, out_task_id, callback_url=callback_url, metadata=self.metadata
        )
        metric("submit", model=self.resolved_model)  # a new remote task (also when a lost answer's send landed)
        if result.estimated_credits is not None:
            metric("credits.estimated", result.estimated_credits, model=self.resolved_model)
        credits = "unknown" if result.estimated_credits is None else f"{result.estimated_credits:g}"
        self.log.info(
            "Submitted AIReiter task %s: model %s, estimated credits %s%s; %s",
            result.out_task_id,
            self.resolved_model,
            credits,
            " (reattached: the earlier submit had arrived)" if result.reattached else "",
            _callback_note(callback_url),
        )
        return result

    # -------------------------------------------------------------- execution

    @counts_errors
    def execute(self, context: Context) -> dict[str, Any]:
        params = self.check_values(self._values(), at_parse_time=False)
        assert params is not None
        hook = self._hook()
        submitted, known = self._submit_or_reattach(hook, params, context)
        out_task_id = submitted.out_task_id
        kept = remembered(context, out_task_id) if submitted.reattached else None
        # A task finished before this try is counted in the metrics only when an earlier try of this task
        # instance took it on and never saw it finish (the store, 3.3+); else it was counted, or is not ours.
        self.finished_before_this_try = (
            known is not None and known.is_terminal and (kept is None or kept.get("credits_used") is not None)
        )
        if submitted.estimated_credits is None and kept is not None:  # the query has no estimate
            from airflow_provider_aireiter.hooks.transport import credits_value

            estimate = credits_value(kept.get("estimated_credits"))  # editable in the UI: checked again
            submitted = submitted.model_copy(update={"estimated_credits": estimate})
        estimate = submitted.estimated_credits
        self.note_lineage(out_task_id=out_task_id, status=submitted.status, estimated_credits=estimate)
        context["ti"].xcom_push(key="out_task_id", value=out_task_id)
        remember(context, self.log, out_task_id, estimate, None)
        if not self.wait_for_completion:
            return submitted_dict(submitted, self.resolved_model)
        wait_seconds = _seconds(self.wait_timeout, DEFAULT_TIMEOUTS[self.kind])
        if self.deferrable:
            info = self.check_then_defer(context, hook, out_task_id, wait_seconds, known, estimate)
        else:
            # Nothing wakes a worker: it polls at the normal interval, callbacks or not.
            deadline, _ = self.wait_deadline(context, wait_seconds)
            try:
                info = hook.wait_for_task(
                    out_task_id,
                    poll_interval=self.poll_seconds(),
                    deadline=deadline,
                    give_up_after=self.max_outage,
                    not_found_grace=self.not_found_grace,
                    known=known,
                )
            except AireiterTaskFailedError as error:
                self.note_lineage(status=error.status)
                raise
        return self.finish(hook, info, context, estimate)

    @counts_errors
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **legacy: Any) -> dict[str, Any]:
        """Resume after the trigger fired: the same checks, downloads and result as the sync path.

        Woken by a completion callback, it asks the service; a task still running is deferred again
        with the same deadline. ``legacy``: defer kwargs of tasks deferred by 0.3.0 or earlier.
        """
        hook = self._hook()
        info, wait = self.resume(hook, event, legacy)
        return self.finish(hook, info, context, wait.estimated_credits)

    def on_kill(self) -> None:
        self.log.warning(
            "Task killed. AIReiter has no cancel endpoint: the remote task (out_task_id of this try, see the "
            "'out_task_id' XCom or the log above) keeps running and is charged if it completes. "
            "Clearing this task reattaches to it instead of paying again."
        )


class AireiterModelOperator(AireiterGenerateOperator):
    """Base of the per-model operators: ``model_args`` names their arguments, ``model_id`` their model."""

    model_id: ClassVar[str] = ""
    params_field: ClassVar[str] = "params"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.model_args = getattr(cls.__init__, "model_args", cls.model_args)
        cls.template_fields = (
            *AireiterGenerateOperator.template_fields,
            *(arg.name for arg in cls.model_args),
            "extra_params",
        )
        cls.template_fields_renderers = {**AireiterGenerateOperator.template_fields_renderers, "extra_params": "json"}

    def __init__(self, *, model_values: Mapping[str, Any], extra_params: dict[str, Any] | None, **kwargs: Any) -> None:
        for arg in self.model_args:
            setattr(self, arg.name, model_values.get(arg.name))
        self.extra_params = extra_params if extra_params is not None else {}
        model = self.model_for(model_values)  # Veo: its channel's model; a bad channel fails here
        super().__init__(model=model if not _is_lazy(model) else self.model_id, **kwargs)

    @classmethod
    def params_for(cls, values: Mapping[str, Any]) -> Any:
        """Only what the caller set (no invented defaults); ``extra_params`` may not repeat an argument."""
        extra = values.get("extra_params") or {}
        if _is_lazy(extra):
            extra = {}
        if not isinstance(extra, dict):
            raise AireiterInvalidRequestError(f"extra_params must be a dict, got {type(extra).__name__}.")
        params: dict[str, Any] = {}
        for arg in cls.model_args:
            value = values.get(arg.name)
            if arg.param is None or value is None:
                continue
            params[arg.param] = arg.coerce(value) if arg.coerce is not None else value
        clash = sorted(set(params) & set(extra))
        if clash:
            raise AireiterInvalidRequestError(
                f"extra_params sets {', '.join(clash)}, which is already an operator argument; set it only once."
            )
        params.update(extra)
        return params

    @classmethod
    def model_for(cls, values: Mapping[str, Any]) -> Any:
        return cls.model_id


class SeedreamV5LiteOperator(AireiterModelOperator):
    """Generate an image with Seedream 5.0 Lite (model ``seedream_v5_lite``).

    :param prompt: what to draw (templated).
    :param image_urls: up to 9 reference images (templated): public http(s) URLs or
        ``data:image/(jpeg|png|webp);base64,`` URIs of at most 10 MB; sent as ``params.image_url``.
    :param aspect_ratio: ``1:1``, ``3:2``, ``2:3``, ``4:3``, ``3:4``, ``16:9``, ``9:16`` or ``21:9`` (templated).
    :param resolution: ``2K`` (the service's default) or ``3K`` (templated).
    :param web_search: let the model search the web (adds latency; templated, ``"true"``/``"false"`` accepted).
    :param extra_params: further params, sent as given (for params the service adds later).

    Other arguments: see :class:`AireiterGenerateOperator`.
    """

    model_id = "seedream_v5_lite"

    @model_arguments(wire={"image_urls": "image_url"})
    def __init__(
        self,
        *,
        prompt: str,
        image_urls: list[str] | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        web_search: bool | None = None,
        extra_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None: ...


class Seedance15ProOperator(AireiterModelOperator):
    """Generate a video with Seedance 1.5 Pro (model ``seedance_1_5_pro``).

    :param prompt: what to film (templated).
    :param video_length: seconds, a whole number (templated; ``"5"`` is read as 5).
    :param aspect_ratio: ``16:9`` or ``9:16`` (templated).
    :param resolution: ``720p`` or ``1080p`` (templated; 16:9 720p is 1280x720).
    :param extra_params: further params, sent as given.

    Other arguments: see :class:`AireiterGenerateOperator`.
    """

    model_id = "seedance_1_5_pro"

    @model_arguments()
    def __init__(
        self,
        *,
        prompt: str,
        video_length: int | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        extra_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None: ...


class Veo31Operator(AireiterModelOperator):
    """Animate an image with Veo 3.1 (model ``veo3_1``, ``veo3_1_base`` or ``veo3_1_plus``).

    :param prompt: how the scene should move (templated).
    :param image_url: the first frame, a public http(s) URL (templated).
    :param end_image_url: the last frame, a public http(s) URL (templated).
    :param aspect_ratio: ``16:9`` (the service's default) or ``9:16`` (templated).
    :param channel: ``default``, ``base`` or ``plus`` (templated): the service tier (stability and price, not quality).
    :param extra_params: further params, sent as given.

    Other arguments: see :class:`AireiterGenerateOperator`.
    """

    model_id = VEO31_CHANNELS["default"]

    @model_arguments(wire={"channel": None})
    def __init__(
        self,
        *,
        prompt: str,
        image_url: str | None = None,
        end_image_url: str | None = None,
        aspect_ratio: str | None = None,
        channel: str = "default",
        extra_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None: ...

    @classmethod
    def model_for(cls, values: Mapping[str, Any]) -> Any:
        channel = values.get("channel", "default")
        if channel is None:
            channel = "default"
        if _is_lazy(channel):
            return channel  # a template: checked after rendering
        if channel not in VEO31_CHANNELS:
            raise AireiterInvalidRequestError(
                f"channel={channel!r} is not allowed; allowed: {', '.join(repr(c) for c in VEO31_CHANNELS)}."
            )
        return VEO31_CHANNELS[channel]


_HALF_CONFIGURED_WARNED: set[str] = set()


def _warn_once_if_half_configured(log: Any, settings: Any) -> None:
    """One warning per connection and process when only one of the two callback extras is set."""
    missing = settings.callbacks_half_configured
    if missing is None or settings.conn_id in _HALF_CONFIGURED_WARNED:
        return
    _HALF_CONFIGURED_WARNED.add(settings.conn_id)
    log.warning(
        "The connection %r sets only one of callback_base_url and callback_secret (%s is missing): completion "
        "callbacks are off and tasks poll. Set both to use callbacks, or neither to silence this warning.",
        settings.conn_id,
        missing,
    )


def _callback_note(callback_url: str | None) -> str:
    """What the task log says about the callback URL sent: where to, never its token."""
    if not callback_url:
        return "no completion callback URL sent (polling only)"
    return f"completion callback URL sent: {callback_url.split('?', 1)[0]} (token not shown)"


def _same_model(echoed: str, mine: str) -> bool:
    """The same model, allowing for an echo with or without a channel suffix (``veo3_1`` / ``veo3_1_plus``)."""
    return echoed == mine or mine.startswith(echoed + "_") or echoed.startswith(mine + "_")


def _same_value(a: Any, b: Any) -> bool:
    """JSON values equal up to surrounding spaces and the spelling of a scalar (``5`` and ``"5"``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    if a == b:
        return True
    return (isinstance(a, str) or isinstance(b, str)) and _scalar_text(a) == _scalar_text(b)


def _scalar_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value).strip()


def _is_data_uri(value: Any) -> bool:
    if isinstance(value, list):
        return any(_is_data_uri(v) for v in value)
    return isinstance(value, str) and value.lstrip().lower().startswith("data:")


def _is_lazy(value: Any) -> bool:
    """Whether a value is only known at run time: Jinja, an XComArg, an ``ObjectStoragePath``...."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_is_lazy(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_is_lazy(v) for v in value)
    return not isinstance(value, int | float | bool | type(None))
