"""Generation operators: a generic one for any AIReiter model and one per documented model.

Each operator submits one task (or reattaches to it after a retry), waits on the worker or deferred
in the triggerer, downloads the outputs to ``output_path`` and returns a small plain-JSON dict.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from airflow_provider_aireiter.connection import DEFAULT_CONN_ID
from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError
from airflow_provider_aireiter.operators.links import AireiterOutputLink
from airflow_provider_aireiter.params import VEO31_CHANNELS, model_kind, validate_params
from airflow_provider_aireiter.task_ids import attempt_id, check_out_task_id, default_out_task_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_aireiter.hooks.aireiter import AireiterHook
    from airflow_provider_aireiter.models import SubmitResult, TaskInfo

# The run-time modules (the hook, pydantic models, the finish step) are imported inside the methods
# that use them: a DAG file importing this module should not pay for them at every parse.

#: default seconds to wait, by model kind
DEFAULT_TIMEOUTS = {"image": 15 * 60.0, "video": 60 * 60.0}
#: default seconds between status queries, by model kind
DEFAULT_POLL_INTERVALS = {"image": 5.0, "video": 15.0}
#: seconds between fallback queries while a completion callback is expected
DEFAULT_CALLBACK_POLL_INTERVAL = 60.0


def _seconds(value: float | timedelta | None, default: float) -> float:
    if value is None:
        return default
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class AireiterGenerateOperator(BaseOperator):
    """Generate images or videos with any AIReiter model.

    :param model: the model id, with its channel suffix if any (``"nano_banana_pro"``, ``"sora2_plus"``).
    :param model_params: the model's params, sent as given (templated). Known models are validated first.
    :param aireiter_conn_id: the ``aireiter`` connection.
    :param out_task_id: your id for the remote task (templated). By default derived from dag_id, task_id,
        run_id and map_index: stable across retries, so a retry reattaches instead of paying again.
    :param callback_url: where AIReiter POSTs on completion. By default, when the connection has a
        callback base URL and secret, a signed URL to this Airflow's callback receiver.
    :param use_callback: set ``False`` to never send a callback URL.
    :param metadata: a dict AIReiter returns unchanged in query results (templated).
    :param wait_for_completion: wait for the task to finish (default); ``False`` returns right after submitting.
    :param poll_interval: seconds between status queries (default 5 for images, 15 for videos).
    :param callback_poll_interval: seconds between fallback queries while a callback is expected (default 60).
    :param timeout: longest wait in seconds or a timedelta (default 15 min for images, 60 min for videos).
    :param output_path: where to store the outputs (templated): an ``ObjectStoragePath`` or a URI such as
        ``file:///data/media/{{ ds }}/`` or ``s3://bucket/prefix/``. Files are named ``<out_task_id>_<n>.<ext>``.
    :param deferrable: wait in the triggerer instead of on a worker (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("model", "model_params", "out_task_id", "metadata", "output_path", "callback_url")
    template_fields_renderers = {"model_params": "json", "metadata": "json"}
    operator_extra_links = (AireiterOutputLink(),)
    ui_color = "#f3e8ff"

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
        self.deferrable = deferrable
        self._validate(at_parse_time=True)

    # -------------------------------------------------------------- parameters

    def build_params(self) -> Any:
        """The params to send (subclasses build them from their keyword arguments); validated by the caller."""
        return dict(self.model_params) if isinstance(self.model_params, dict) else self.model_params

    def _validate(self, *, at_parse_time: bool = False) -> dict[str, Any] | None:
        """Validate what can be validated; values still holding Jinja are checked after rendering."""
        if at_parse_time and _has_template(self._template_values()):
            return None
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise AireiterInvalidRequestError(f"metadata must be a dict, got {type(self.metadata).__name__}.")
        if self.out_task_id is not None and not (at_parse_time and "{{" in str(self.out_task_id)):
            check_out_task_id(self.out_task_id)
        return validate_params(self.model, self.build_params(), field_prefix=self._params_field)

    _params_field = "model_params"

    def _template_values(self) -> list[Any]:
        return [self.model, self.model_params]

    @property
    def kind(self) -> str:
        return model_kind(str(self.model))

    # -------------------------------------------------------------- execution

    def _hook(self) -> AireiterHook:
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook

        return AireiterHook(self.aireiter_conn_id)

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
        from airflow_provider_aireiter.callbacks.tokens import callback_url

        assert settings.callback_base_url is not None and settings.callback_secret is not None
        return callback_url(settings.callback_base_url, settings.callback_secret, out_task_id, settings.conn_id)

    def _submit_or_reattach(self, hook: AireiterHook, params: dict[str, Any], context: Context) -> SubmitResult:
        """Reattach to a task an earlier try created; submit only when there is none to reattach to.

        Try ``n`` looks at ids ``base``, ``base-r2`` ... ``base-r<n>`` in order: the first unknown one is
        submitted; a running or completed one is reattached; a failed one moves on to the next id.
        """
        from airflow_provider_aireiter.models import StatusKind, SubmitResult

        base = self._base_out_task_id(context)
        try_number = max(1, int(getattr(context.get("ti"), "try_number", 1) or 1))
        last_failed: TaskInfo | None = None
        for attempt in range(1, try_number + 1):
            candidate = attempt_id(base, attempt)
            existing = hook.find_task(candidate)
            if existing is None:
                return self._submit(hook, params, candidate)
            if existing.kind is not StatusKind.FAILURE:
                self.log.info(
                    "AIReiter already has task %s (%s) from an earlier try: reattaching, nothing is submitted.",
                    candidate,
                    existing.status,
                )
                return SubmitResult.reattached_to(existing, candidate)
            last_failed = existing
            self.log.info(
                "Earlier attempt %s failed remotely (%s); trying the next attempt id.", candidate, existing.error
            )
        # Every id up to this try exists and failed: this try's own id already failed (a manual re-run).
        assert last_failed is not None
        from airflow_provider_aireiter.waiting import raise_if_failed

        raise_if_failed(last_failed)
        raise AssertionError("unreachable")

    def _submit(self, hook: AireiterHook, params: dict[str, Any], out_task_id: str) -> SubmitResult:
        callback_url = self._callback_url(hook, out_task_id)
        result = hook.submit(str(self.model), params, out_task_id, callback_url=callback_url, metadata=self.metadata)
        credits = "unknown" if result.estimated_credits is None else f"{result.estimated_credits:g}"
        self.log.info(
            "Submitted AIReiter task %s: model %s, estimated credits %s%s; %s",
            result.out_task_id,
            self.model,
            credits,
            " (reattached: the earlier submit had arrived)" if result.reattached else "",
            _callback_note(callback_url),
        )
        return result

    def execute(self, context: Context) -> dict[str, Any]:
        params = self._validate()
        assert params is not None
        hook = self._hook()
        submitted = self._submit_or_reattach(hook, params, context)
        out_task_id = submitted.out_task_id
        context["ti"].xcom_push(key="out_task_id", value=out_task_id)
        if not self.wait_for_completion:
            from airflow_provider_aireiter.completion import submitted_dict

            return submitted_dict(submitted, str(self.model))
        timeout = _seconds(self.wait_timeout, DEFAULT_TIMEOUTS[self.kind])
        deadline = time.time() + timeout
        if self.deferrable:
            info = hook.find_task(out_task_id)
            if info is not None and info.is_terminal:
                return self._finish(hook, info, context)
            self._defer_wait(out_task_id, deadline, self._effective_poll_interval(hook))
        # Nothing wakes a worker: it polls at the normal interval, callbacks or not.
        interval = _seconds(self.poll_interval, DEFAULT_POLL_INTERVALS[self.kind])
        info = hook.wait_for_task(out_task_id, poll_interval=interval, deadline=deadline)
        return self._finish(hook, info, context)

    def _effective_poll_interval(self, hook: AireiterHook) -> float:
        """The trigger's poll interval: the fallback interval when a callback is expected to wake it."""
        default = _seconds(self.poll_interval, DEFAULT_POLL_INTERVALS[self.kind])
        if self.use_callback and not self.callback_url and hook.settings.callbacks_enabled:
            # A callback wakes the task; queries are only the fallback when none arrives.
            return max(default, float(self.callback_poll_interval))
        return default

    def _defer_wait(self, out_task_id: str, deadline: float, interval: float) -> NoReturn:
        from airflow_provider_aireiter.resume_gate import resume_not_before
        from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger

        now = time.time()
        self.defer(
            trigger=AireiterTaskTrigger(
                out_task_id=out_task_id,
                deadline=deadline,
                aireiter_conn_id=self.aireiter_conn_id,
                poll_interval=interval,
                first_poll_at=now + interval,  # this task has just asked
                resume_not_before=resume_not_before(now),
            ),
            method_name="execute_complete",
            kwargs={"out_task_id": out_task_id, "deadline": deadline, "deferred_at": now},
            timeout=None,
        )

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        out_task_id: str | None = None,
        deadline: float | None = None,
        deferred_at: float | None = None,
    ) -> dict[str, Any]:
        """Resume after the trigger fired: the same checks, downloads and result as the sync path.

        Woken by a completion callback, it asks the service; a task still running is deferred again
        with the same deadline.
        """
        from airflow_provider_aireiter.completion import log_wake, resolve_event

        hook = self._hook()
        # dag.test() replaces the defer kwargs with the event; the event names the task too.
        out_task_id = out_task_id or (event.get("out_task_id") if isinstance(event, dict) else None)
        log_wake(self.log, event, deferred_at)
        info = resolve_event(hook, event, out_task_id)
        if info is None:
            assert out_task_id is not None
            self.log.info("Woken by a callback, but AIReiter task %s is still running; waiting again.", out_task_id)
            self._defer_wait(out_task_id, deadline or time.time(), self._effective_poll_interval(hook))
        return self._finish(hook, info, context)

    def _finish(self, hook: AireiterHook, info: TaskInfo, context: Context) -> dict[str, Any]:
        from airflow_provider_aireiter.completion import finish

        return finish(hook, info, output_path=self.output_path, context=context, outlets=self.outlets, log=self.log)

    def on_kill(self) -> None:
        self.log.warning(
            "Task killed. AIReiter has no cancel endpoint: the remote task (out_task_id of this try, see the "
            "'out_task_id' XCom or the log above) keeps running and is charged if it completes. "
            "Clearing this task reattaches to it instead of paying again."
        )


class SeedreamV5LiteOperator(AireiterGenerateOperator):
    """Generate an image with Seedream 5.0 Lite (model ``seedream_v5_lite``).

    :param prompt: what to draw (templated).
    :param image_urls: up to 9 reference images (templated): public http(s) URLs or
        ``data:image/(jpeg|png|webp);base64,`` URIs of at most 10 MB; sent as ``params.image_url``.
    :param aspect_ratio: ``1:1``, ``3:2``, ``2:3``, ``4:3``, ``3:4``, ``16:9``, ``9:16`` or ``21:9``.
    :param resolution: ``2K`` (the service's default) or ``3K``.
    :param web_search: let the model search the web (adds latency).
    :param extra_params: further params, sent as given (for params the service adds later).

    Other arguments: see :class:`AireiterGenerateOperator`.
    """

    template_fields: Sequence[str] = (
        *AireiterGenerateOperator.template_fields,
        "prompt",
        "image_urls",
        "extra_params",
    )
    template_fields_renderers = {**AireiterGenerateOperator.template_fields_renderers, "extra_params": "json"}
    _params_field = "params"

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
        self.prompt = prompt
        self.image_urls = image_urls
        self.aspect_ratio = aspect_ratio
        self.resolution = resolution
        self.web_search = web_search
        self.extra_params = extra_params or {}
        super().__init__(model="seedream_v5_lite", **kwargs)

    def _template_values(self) -> list[Any]:
        return [self.prompt, self.image_urls, self.extra_params]

    def build_params(self) -> dict[str, Any]:
        return _merge(
            {
                "prompt": self.prompt,
                "image_url": self.image_urls,
                "aspect_ratio": self.aspect_ratio,
                "resolution": self.resolution,
                "web_search": self.web_search,
            },
            self.extra_params,
        )


class Seedance15ProOperator(AireiterGenerateOperator):
    """Generate a video with Seedance 1.5 Pro (model ``seedance_1_5_pro``).

    :param prompt: what to film (templated).
    :param video_length: seconds, a whole number (the seed example uses 5).
    :param aspect_ratio: ``16:9`` or ``9:16``.
    :param resolution: ``720p`` or ``1080p`` (16:9 720p is 1280x720).
    :param extra_params: further params, sent as given.

    Other arguments: see :class:`AireiterGenerateOperator`.
    """

    template_fields: Sequence[str] = (*AireiterGenerateOperator.template_fields, "prompt", "extra_params")
    template_fields_renderers = {**AireiterGenerateOperator.template_fields_renderers, "extra_params": "json"}
    _params_field = "params"

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
        self.prompt = prompt
        self.video_length = video_length
        self.aspect_ratio = aspect_ratio
        self.resolution = resolution
        self.extra_params = extra_params or {}
        super().__init__(model="seedance_1_5_pro", **kwargs)

    def _template_values(self) -> list[Any]:
        return [self.prompt, self.extra_params]

    def build_params(self) -> dict[str, Any]:
        return _merge(
            {
                "prompt": self.prompt,
                "video_length": self.video_length,
                "aspect_ratio": self.aspect_ratio,
                "resolution": self.resolution,
            },
            self.extra_params,
        )


class Veo31Operator(AireiterGenerateOperator):
    """Animate an image with Veo 3.1 (model ``veo3_1``, ``veo3_1_base`` or ``veo3_1_plus``).

    :param prompt: how the scene should move (templated).
    :param image_url: the first frame, a public http(s) URL (templated).
    :param end_image_url: the last frame, a public http(s) URL (templated).
    :param aspect_ratio: ``16:9`` (the service's default) or ``9:16``.
    :param channel: ``default``, ``base`` or ``plus``: the service tier (stability and price, not quality).
    :param extra_params: further params, sent as given.

    Other arguments: see :class:`AireiterGenerateOperator`.
    """

    template_fields: Sequence[str] = (
        *AireiterGenerateOperator.template_fields,
        "prompt",
        "image_url",
        "end_image_url",
        "extra_params",
    )
    template_fields_renderers = {**AireiterGenerateOperator.template_fields_renderers, "extra_params": "json"}
    _params_field = "params"

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
        if channel not in VEO31_CHANNELS:
            raise AireiterInvalidRequestError(
                f"channel={channel!r} is not allowed; allowed: {', '.join(VEO31_CHANNELS)}."
            )
        self.prompt = prompt
        self.image_url = image_url
        self.end_image_url = end_image_url
        self.aspect_ratio = aspect_ratio
        self.channel = channel
        self.extra_params = extra_params or {}
        super().__init__(model=VEO31_CHANNELS[channel], **kwargs)

    def _template_values(self) -> list[Any]:
        return [self.prompt, self.image_url, self.end_image_url, self.extra_params]

    def build_params(self) -> dict[str, Any]:
        return _merge(
            {
                "prompt": self.prompt,
                "image_url": self.image_url,
                "end_image_url": self.end_image_url,
                "aspect_ratio": self.aspect_ratio,
            },
            self.extra_params,
        )


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


def _merge(explicit: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Only what the caller set (no invented defaults); ``extra_params`` may not override an argument."""
    if not isinstance(extra, dict):
        raise AireiterInvalidRequestError(f"extra_params must be a dict, got {type(extra).__name__}.")
    params = {key: value for key, value in explicit.items() if value is not None}
    clash = sorted(set(params) & set(extra))
    if clash:
        raise AireiterInvalidRequestError(
            f"extra_params sets {', '.join(clash)}, which is already an operator argument; set it only once."
        )
    params.update(extra)
    return params


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_template(v) for v in value)
    # XComArg, ObjectStoragePath or another lazy value: resolved at run time, checked then.
    return not isinstance(value, int | float | bool | type(None))
