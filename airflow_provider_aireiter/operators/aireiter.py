"""Generation operators: a generic one for any AIReiter model and one per documented model.

Each operator submits one task (or reattaches to it after a retry), waits on the worker or deferred
in the triggerer (:mod:`.wait`, shared with the sensor), downloads the outputs to ``output_path`` and
returns a small plain-JSON dict.

The model operators are driven by one table each (:class:`ModelArg`): the operator argument, the
param it is sent as, and how a rendered template string becomes a value. Every argument in the table
is a template field; values are validated at parse time where they are literals (also in
``.partial()``) and again after rendering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_aireiter.compat import conf
from airflow_provider_aireiter.connection import DEFAULT_CONN_ID
from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError
from airflow_provider_aireiter.operators.links import AireiterOutputLink
from airflow_provider_aireiter.operators.wait import AireiterWaitMixin
from airflow_provider_aireiter.params import VEO31_CHANNELS, model_kind, validate_params
from airflow_provider_aireiter.task_ids import attempt_id, check_out_task_id, default_out_task_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_aireiter.hooks.aireiter import AireiterHook
    from airflow_provider_aireiter.task_types import SubmitResult, TaskInfo

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


@dataclass(frozen=True)
class ModelArg:
    """One argument of a model operator.

    :param name: the operator's keyword argument (a template field).
    :param param: the key it is sent as in ``params``; ``None`` for an argument that is not a param
        (Veo's ``channel`` picks the model id).
    :param coerce: turns a rendered template string into the value's type (``"5"`` -> 5).
    """

    name: str
    param: str | None
    coerce: Callable[[Any], Any] | None = None


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
        self.aireiter_conn_id = aireiter_conn_id
        self.out_task_id = out_task_id
        self.callback_url = callback_url
        self.use_callback = use_callback
        self.metadata = metadata
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.callback_poll_interval = callback_poll_interval
        self.wait_timeout = timeout
        self.output_path = output_path
        self.regenerate_finished = regenerate_finished
        self.max_outage = None if max_outage is None else _seconds(max_outage, 0.0)
        self.not_found_grace = NOT_FOUND_GRACE_SECONDS
        self.deferrable = deferrable
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
        from airflow_provider_aireiter.webhook.tokens import callback_url

        assert settings.callback_base_url is not None and settings.callback_secret is not None
        return callback_url(settings.callback_base_url, settings.callback_secret, out_task_id, settings.conn_id)

    def _submit_or_reattach(self, hook: AireiterHook, params: dict[str, Any], context: Context) -> SubmitResult:
        """Reattach to a task an earlier try created from the same request; submit only when there is none.

        Try ``n`` looks at ids ``base``, ``base-r2`` ... ``base-r<n>`` in order: the first unknown one is
        submitted; a running or completed one made from this request is reattached. It moves on to the
        next id past one that failed remotely, one made from another request (the DAG changed before the
        task was cleared: :meth:`_request_changes`), and, with ``regenerate_finished``, one that
        completed; past ``base-r<n>`` only for the last two.
        """
        from airflow_provider_aireiter.task_types import StatusKind, SubmitResult

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
                return self._submit(hook, params, candidate)
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
            return SubmitResult.reattached_to(existing, candidate)
        if moved_on:
            raise AireiterInvalidRequestError(
                f"No free attempt id left after {base!r}; set out_task_id to a new value."
            )
        # This try's own id already failed (a manual re-run of a failed task).
        assert last is not None
        from airflow_provider_aireiter.waiting import raise_if_failed

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

    def execute(self, context: Context) -> dict[str, Any]:
        params = self.check_values(self._values(), at_parse_time=False)
        assert params is not None
        hook = self._hook()
        submitted = self._submit_or_reattach(hook, params, context)
        out_task_id = submitted.out_task_id
        context["ti"].xcom_push(key="out_task_id", value=out_task_id)
        if not self.wait_for_completion:
            from airflow_provider_aireiter.completion import submitted_dict

            return submitted_dict(submitted, self.resolved_model)
        wait_seconds = _seconds(self.wait_timeout, DEFAULT_TIMEOUTS[self.kind])
        if self.deferrable:
            info = self.check_then_defer(context, hook, out_task_id, wait_seconds, self.poll_seconds())
        else:
            # Nothing wakes a worker: it polls at the normal interval, callbacks or not.
            deadline, _ = self.wait_deadline(context, wait_seconds)
            info = hook.wait_for_task(
                out_task_id,
                poll_interval=self.poll_seconds(),
                deadline=deadline,
                give_up_after=self.max_outage,
                not_found_grace=self.not_found_grace,
            )
        assert info is not None
        return self.finish(hook, info, context)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        out_task_id: str | None = None,
        deadline: float | None = None,
        deadline_kind: str | None = None,
        deferred_at: float | None = None,
    ) -> dict[str, Any]:
        """Resume after the trigger fired: the same checks, downloads and result as the sync path.

        Woken by a completion callback, it asks the service; a task still running is deferred again
        with the same deadline.
        """
        hook = self._hook()
        # dag.test() replaces the defer kwargs with the event; the event names the task too.
        out_task_id = out_task_id or (event.get("out_task_id") if isinstance(event, dict) else None)
        assert out_task_id, "resumed without an out_task_id"
        info = self.resume(hook, event, out_task_id, deadline, deadline_kind, deferred_at)
        return self.finish(hook, info, context)

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


def _model_values(local_names: Mapping[str, Any], table: tuple[ModelArg, ...]) -> dict[str, Any]:
    """A model operator's ``__init__`` arguments named in its table."""
    return {arg.name: local_names.get(arg.name) for arg in table}


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
    model_args = (
        ModelArg("prompt", "prompt"),
        ModelArg("image_urls", "image_url"),
        ModelArg("aspect_ratio", "aspect_ratio"),
        ModelArg("resolution", "resolution"),
        ModelArg("web_search", "web_search", _as_bool),
    )

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
    ) -> None:
        super().__init__(model_values=_model_values(locals(), self.model_args), extra_params=extra_params, **kwargs)


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
    model_args = (
        ModelArg("prompt", "prompt"),
        ModelArg("video_length", "video_length", _as_int),
        ModelArg("aspect_ratio", "aspect_ratio"),
        ModelArg("resolution", "resolution"),
    )

    def __init__(
        self,
        *,
        prompt: str,
        video_length: int | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        extra_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_values=_model_values(locals(), self.model_args), extra_params=extra_params, **kwargs)


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
    model_args = (
        ModelArg("prompt", "prompt"),
        ModelArg("image_url", "image_url"),
        ModelArg("end_image_url", "end_image_url"),
        ModelArg("aspect_ratio", "aspect_ratio"),
        ModelArg("channel", None),
    )

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
    ) -> None:
        super().__init__(model_values=_model_values(locals(), self.model_args), extra_params=extra_params, **kwargs)

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
