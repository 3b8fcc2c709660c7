"""``AireiterHook``: every HTTP call to AIReiter, sync (``requests``) and async (for triggers), retries included."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.sdk import BaseHook

from airflow_provider_aireiter import __version__
from airflow_provider_aireiter.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    ConnectionSettings,
    settings_from_connection,
)
from airflow_provider_aireiter.envelope import (
    body_code,
    decode_envelope,
    error_for_http_status,
    parse_query,
    parse_submit,
    preview,
)
from airflow_provider_aireiter.exceptions import (
    AireiterAuthError,
    AireiterError,
    AireiterGarbledResponseError,
    AireiterInvalidRequestError,
    AireiterResponseError,
    AireiterSubmitOutcomeUnknownError,
    AireiterTaskNotFoundError,
    AireiterTransientError,
)
from airflow_provider_aireiter.hooks.transport_errors import from_requests, network_error
from airflow_provider_aireiter.retry import AireiterRetryPolicy
from airflow_provider_aireiter.task_types import SubmitResult, TaskInfo
from airflow_provider_aireiter.waiting import StatusWatcher, raise_if_failed, timeout_error

if TYPE_CHECKING:
    import requests

    from airflow_provider_aireiter.hooks.downloads import DownloadedFile

T = TypeVar("T")

USER_AGENT = f"airflow-provider-aireiter/{__version__} (+Apache Airflow provider)"


class AireiterHook(BaseHook):
    """Talk to the AIReiter API through an ``aireiter`` connection.

    One ``requests.Session`` per hook (connections are reused); the async path shares one small
    aiohttp session per event loop (:mod:`.async_transport`), so thousands of triggers use a
    few connections.

    :param aireiter_conn_id: the ``aireiter`` connection (host = base URL, password = API key).
    :param retry_policy: how transient failures are retried; by default the connection's retry extras,
        else 5 tries with exponential backoff (see :class:`~airflow_provider_aireiter.retry.AireiterRetryPolicy`).
    :param timeout: seconds per HTTP request; defaults to the connection's ``timeout`` extra (60).
    """

    conn_name_attr = "aireiter_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "AIReiter"

    def __init__(
        self,
        aireiter_conn_id: str = DEFAULT_CONN_ID,
        *,
        retry_policy: AireiterRetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.aireiter_conn_id = aireiter_conn_id
        self._retry_policy = retry_policy
        self._timeout = timeout
        self._settings: ConnectionSettings | None = None
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(aireiter_conn_id={self.aireiter_conn_id!r})"

    # ---------------------------------------------------------------- connection

    @property
    def settings(self) -> ConnectionSettings:
        """The connection's settings, read once per hook."""
        if self._settings is None:
            self._settings = settings_from_connection(self.get_connection(self.aireiter_conn_id))
        return self._settings

    async def aget_settings(self) -> ConnectionSettings:
        """The connection's settings, read with Airflow's async connection access.

        Shared by the hooks of one event loop for a minute: a thousand triggers
        starting together make one lookup (each costs a thread hop, or a trip to the triggerer's
        supervisor), not a thousand. Each hook keeps what it read, as the sync path does.
        """
        if self._settings is None:
            from airflow_provider_aireiter.hooks.async_transport import loop_transport

            self._settings = await loop_transport().connection_settings(self.aireiter_conn_id, self._fetch_settings)
        return self._settings

    async def _fetch_settings(self) -> ConnectionSettings:
        return settings_from_connection(await self.aget_connection(self.aireiter_conn_id))

    @property
    def retry_policy(self) -> AireiterRetryPolicy:
        """The policy given to the hook, else the connection's."""
        return self._retry_policy if self._retry_policy is not None else self.settings.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: AireiterRetryPolicy | None) -> None:
        self._retry_policy = policy

    @property
    def timeout(self) -> float:
        return self._timeout if self._timeout is not None else self.settings.timeout

    def _headers(self, settings: ConnectionSettings) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {settings.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session``, created on first use with the auth headers set."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update(self._headers(self.settings))
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the HTTP session (the hook opens a new one if used again)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # ---------------------------------------------------------------- sync transport

    def _post_once(self, path: str, body: dict[str, Any], *, what: str, out_task_id: str | None) -> dict[str, Any]:
        """One POST; every failure becomes an :class:`AireiterError` (never a raw ``requests`` error)."""
        import requests

        url = self.settings.api_url + path
        self.log.debug("AIReiter POST %s", path)
        try:
            response = self.get_conn().post(url, json=body, timeout=self.timeout)
        except requests.exceptions.RequestException as exc:
            raise network_error(what, from_requests(exc), out_task_id=out_task_id) from None
        return self._read(response.status_code, response.headers, response.content, what=what, out_task_id=out_task_id)

    def _read(self, status: int, headers: Any, content: bytes, *, what: str, out_task_id: str | None) -> dict[str, Any]:
        if self.log.isEnabledFor(logging.DEBUG):  # the preview costs something on every poll
            self.log.debug("AIReiter answered HTTP %s: %s", status, preview(content))
        # requests' and aiohttp's header mappings both ignore case.
        error = error_for_http_status(status, headers.get("retry-after"), what=what, out_task_id=out_task_id)
        if error is not None:
            if isinstance(error, AireiterAuthError | AireiterTransientError):
                raise error
            # Any other status: the body may still be the service's envelope (it says more).
            try:
                envelope = decode_envelope(content, headers.get("content-type"), what=what)
            except (AireiterResponseError, AireiterGarbledResponseError):
                raise error from None
            if body_code(envelope) is None:  # JSON, but not the service's envelope (a proxy, another API)
                raise error
        payload = decode_envelope(content, headers.get("content-type"), what=what)
        return payload

    def _retrying(self, call: Callable[[], T], *, what: str) -> T:
        """``call()``, retried on transient failures by the policy (tenacity). Not for submits (see :meth:`submit`)."""
        return self.retry_policy.retrying(what=what, log=self.log)(call)

    def _pause_before_retry(self, error: AireiterError, attempt: int, what: str) -> None:
        delay = self.retry_policy.delay(error, attempt)
        self.log.warning(
            "%s failed (%s); retry %d of %d in %.1fs",
            what,
            error.message,
            attempt,
            self.retry_policy.max_attempts - 1,
            delay,
        )
        time.sleep(delay)

    # ---------------------------------------------------------------- public sync API

    def submit(
        self,
        model: str,
        params: dict[str, Any],
        out_task_id: str,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Create a generation task. One call never sends a submit the service may already have taken.

        What a caller gets:

        * the service's answer, as a :class:`SubmitResult`;
        * when an answer was lost (the connection reset after sending, a timeout, HTTP 5xx, a cut or
          garbled body): after ``retry_policy.recheck_delay`` seconds the hook asks the service for
          ``out_task_id``. If the service knows it, the earlier submit landed and its task is returned
          (``reattached=True``), nothing is sent again. Only a definite "api task not found" lets the
          submit be sent again, within ``retry_policy.max_attempts`` sends in all;
        * when that re-check itself gets no answer for ``retry_policy.recheck_budget`` seconds:
          :class:`AireiterSubmitOutcomeUnknownError`, and nothing is sent again. A later call (the
          task's next try) reattaches if the submit landed, so ask with :meth:`find_task` first;
        * a failure that certainly left nothing behind (could not connect, HTTP 429, service busy) is
          retried after a backoff without asking; an error no retry can fix (bad key, no credits,
          invalid params, an HTML page) is raised at once;
        * when the service refuses the submit as invalid (a body code such as 400, 404 or 422), one
          query asks whether ``out_task_id`` exists: if so (the id was taken by an earlier send),
          that task is returned (``reattached=True``); otherwise the refusal is raised. No message
          text is read.

        :param model: the model id, with its channel suffix if any (``veo3_1_plus``).
        :param params: the model's params, sent as given.
        :param out_task_id: your id for the task (``[A-Za-z0-9_-]``, at most 64 characters).
        :param callback_url: where AIReiter POSTs when the task finishes.
        :param metadata: returned unchanged in query results.
        :raises AireiterSubmitOutcomeUnknownError: the submit may or may not have landed (see above).
        """
        body: dict[str, Any] = {"model": model, "params": params, "out_task_id": out_task_id}
        if callback_url:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = metadata
        what = f"the submit of {out_task_id!r}"
        policy = self.retry_policy
        sends = 0
        while True:
            sends += 1
            try:
                payload = self._post_once("/submit", body, what=what, out_task_id=out_task_id)
                return parse_submit(payload, out_task_id=out_task_id)
            except AireiterInvalidRequestError as error:
                if error.service_code is None:  # refused here, before anything was sent
                    raise
                # The service refused the submit. Its answer to a taken out_task_id is not documented,
                # so the message is not read: one query tells whether the id is taken (then that task
                # is ours from an earlier send) or the refusal stands. A query that gets no answer
                # leaves the outcome unknown (AireiterSubmitOutcomeUnknownError): the next try asks again.
                existing = self._recheck_submit(out_task_id, error, wait=False)
                if existing is None:
                    raise
                return self._reattached(existing, out_task_id, "AIReiter already has")
            except AireiterError as error:
                if not error.retryable:
                    raise
                if getattr(error, "maybe_processed", True):
                    existing = self._recheck_submit(out_task_id, error)
                    if existing is not None:
                        return self._reattached(existing, out_task_id, "The earlier submit did reach AIReiter:")
                    # A definite "not found": the submit did not land, sending it again is safe.
                if sends >= policy.max_attempts:
                    raise
                self._pause_before_retry(error, sends, what)

    def _reattached(self, existing: TaskInfo, out_task_id: str, said: str) -> SubmitResult:
        self.log.warning("%s task %s (status %s); not sending it again.", said, out_task_id, existing.status)
        return SubmitResult.reattached_to(existing, out_task_id)

    def _recheck_submit(self, out_task_id: str, lost: AireiterError, *, wait: bool = True) -> TaskInfo | None:
        """After a submit's answer was lost: the task if the service has it, ``None`` on a definite "not found".

        Waits ``recheck_delay`` first (``wait``), then asks with single queries (no nested retries)
        until one gets an answer or ``recheck_budget`` seconds are spent.

        :raises AireiterSubmitOutcomeUnknownError: when no query got an answer within the budget.
        """
        policy = self.retry_policy
        what = f"the re-check of the submit of {out_task_id!r}"
        if wait:
            self.log.warning(
                "The answer to the submit of %s was lost (%s); asking AIReiter in %.1fs whether it arrived.",
                out_task_id,
                lost.message,
                policy.recheck_delay,
            )
            time.sleep(policy.recheck_delay)
        asked = 0

        def ask() -> TaskInfo | None:
            nonlocal asked
            asked += 1
            try:
                payload = self._post_once("/query", {"out_task_id": out_task_id}, what=what, out_task_id=out_task_id)
                return parse_query(payload, out_task_id=out_task_id, task_id=None)
            except AireiterTaskNotFoundError:
                return None

        # Single queries (no nested retries), as many as fit in the budget.
        retrying = policy.retrying(what=what, log=self.log, max_attempts=0, stop_at=time.time() + policy.recheck_budget)
        try:
            return retrying(ask)
        except AireiterError as error:
            raise AireiterSubmitOutcomeUnknownError(
                f"The submit of {out_task_id!r} may or may not have reached AIReiter: its answer was lost "
                f"({lost.message}) and {asked} quer{'y' if asked == 1 else 'ies'} asking for it got no answer "
                f"({error.message}). It was not sent again, so it cannot be paid twice. The task's next try "
                "looks this out_task_id up first and reattaches to it if it arrived.",
                out_task_id=out_task_id,
            ) from None

    def query(self, out_task_id: str | None = None, task_id: str | None = None) -> TaskInfo:
        """The task's current state. Raises :class:`AireiterTaskNotFoundError` for an unknown id."""
        what = f"the query of {out_task_id or task_id!r}"
        return self._retrying(lambda: self._query_once(out_task_id, task_id, what=what), what=what)

    def _query_once(self, out_task_id: str | None, task_id: str | None, *, what: str) -> TaskInfo:
        payload = self._post_once("/query", _query_body(out_task_id, task_id), what=what, out_task_id=out_task_id)
        return parse_query(payload, out_task_id=out_task_id, task_id=task_id)

    def find_task(self, out_task_id: str, *, retry: bool = True) -> TaskInfo | None:
        """The task's state, or ``None`` when the service answers "api task not found".

        :param retry: ``False``: one request, a failure is raised at once (for a caller whose own loop
            asks again, such as a sensor's pokes).
        """
        try:
            if retry:
                return self.query(out_task_id=out_task_id)
            return self._query_once(out_task_id, None, what=f"the query of {out_task_id!r}")
        except AireiterTaskNotFoundError:
            return None

    def wait_for_task(
        self,
        out_task_id: str,
        poll_interval: float = 10.0,
        timeout: float = 1800.0,
        *,
        raise_on_failure: bool = True,
        deadline: float | None = None,
        give_up_after: float | None = None,
        not_found_grace: float | None = None,
    ) -> TaskInfo:
        """Poll until the task finishes; log each status change with the elapsed time.

        A failed query (5xx, 429, a reset, a timeout, a garbled body) does not end the wait: it is
        asked again after a backoff capped by ``poll_interval`` until the service answers (see
        :meth:`~airflow_provider_aireiter.retry.AireiterRetryPolicy.call_in_wait`). Only an error
        no retry can fix, the deadline, or the optional budgets below end it.

        :param timeout: seconds to wait from now (ignored when ``deadline`` is given).
        :param deadline: absolute wall-clock time (epoch seconds) to give up at.
        :param raise_on_failure: raise :class:`AireiterTaskFailedError` when the task failed.
        :param give_up_after: seconds without any answer after which the wait fails with the last
            (retryable) error; ``None`` (default): ride out failures until the deadline.
        :param not_found_grace: seconds the service may say "api task not found" before the wait fails
            with :class:`AireiterTaskNotFoundError`; ``None`` (default): wait for the task to appear.
        :raises AireiterTimeoutError: when the task is still running (or the service still not
            answering) at the deadline.
        """
        started = time.time()
        deadline = deadline if deadline is not None else started + timeout
        watcher = StatusWatcher(self.log, out_task_id, started)
        what = f"the query of {out_task_id!r}"
        info: TaskInfo | None = None

        def find_once() -> TaskInfo | None:
            try:
                return self._query_once(out_task_id, None, what=what)
            except AireiterTaskNotFoundError:
                return None

        while True:
            try:
                info = self.retry_policy.call_in_wait(
                    find_once,
                    what=what,
                    log=self.log,
                    stop_at=deadline,
                    poll_interval=poll_interval,
                    give_up_after=give_up_after,
                )
            except AireiterError as error:
                if error.retryable and time.time() >= deadline:
                    raise timeout_error(out_task_id, time.time() - started, info, last_error=error.message) from None
                raise
            watcher.observe(info, not_found_grace=not_found_grace)
            if info is not None and info.is_terminal:
                if raise_on_failure:
                    raise_if_failed(info)
                return info
            remaining = deadline - time.time()
            if remaining <= 0:
                raise timeout_error(out_task_id, time.time() - started, info)
            time.sleep(min(poll_interval, remaining))

    def test_connection(self) -> tuple[bool, str]:
        """Check the URL and the key without spending credits (used by the UI's Test button).

        Queries an id that cannot exist: "api task not found" proves both the address and the key.
        """
        from airflow_provider_aireiter.hooks.connection_test import failure_message, success_message

        settings = self.settings
        try:
            settings.check_callback_settings()
        except AireiterError as exc:  # a bad setting, found before any request: its message names it
            return False, exc.message
        policy = self._retry_policy
        self._retry_policy = AireiterRetryPolicy(max_attempts=1)  # the button should answer at once
        try:
            self.query(out_task_id="airflow-connection-test")
        except AireiterTaskNotFoundError:
            return True, success_message(settings.base_url, settings.callbacks_half_configured)
        except AireiterError as exc:
            return False, failure_message(exc, settings.base_url, self.get_connection(self.aireiter_conn_id).host)
        finally:
            self._retry_policy = policy
        return True, success_message(settings.base_url, settings.callbacks_half_configured)

    def download(self, url: str, directory: Any, stem: str, *, chunk_size: int = 1024 * 1024) -> DownloadedFile:
        """Stream one output to ``directory/<stem><ext>``, unless a complete copy is already there.

        See :mod:`airflow_provider_aireiter.hooks.downloads`. ``directory`` is an ``ObjectStoragePath``.
        """
        from airflow_provider_aireiter.hooks.downloads import (
            check_output_url,
            existing_output,
            stream_to_path,
        )

        check_output_url(url)
        done = existing_output(directory, stem, url)
        if done is not None:
            self.log.info("%s is already complete from an earlier try; not downloading again.", done.path)
            return done
        return self._retrying(
            lambda: stream_to_path(
                url, directory, stem, timeout=self.timeout, user_agent=USER_AGENT, chunk_size=chunk_size
            ),
            what=f"the download of {url.split('?')[0]}",
        )

    # ---------------------------------------------------------------- async API (triggers)

    async def aquery(
        self, out_task_id: str | None = None, task_id: str | None = None, *, stop_at: float | None = None
    ) -> TaskInfo:
        """Async :meth:`query` for triggers: the loop's shared aiohttp session, retried by the policy.

        :param stop_at: epoch seconds after which no retry is started (a trigger's deadline).
        """
        return cast("TaskInfo", await self._aquery(out_task_id, task_id, stop_at=stop_at, missing_ok=False))

    async def afind_task(
        self,
        out_task_id: str,
        *,
        stop_at: float | None = None,
        poll_interval: float | None = None,
        give_up_after: float | None = None,
    ) -> TaskInfo | None:
        """Async :meth:`find_task`. With ``poll_interval`` (and ``stop_at``) it is one query of a wait:
        retried until an answer, ``stop_at`` or ``give_up_after`` seconds without one (see
        :meth:`~airflow_provider_aireiter.retry.AireiterRetryPolicy.call_in_wait`)."""
        return await self._aquery(
            out_task_id,
            None,
            stop_at=stop_at,
            missing_ok=True,
            poll_interval=poll_interval,
            give_up_after=give_up_after,
        )

    async def _aquery(
        self,
        out_task_id: str | None,
        task_id: str | None,
        *,
        stop_at: float | None,
        missing_ok: bool,
        poll_interval: float | None = None,
        give_up_after: float | None = None,
    ) -> TaskInfo | None:
        # A trigger's poll: kept to one coroutine per layer, it runs thousands of times a minute.
        data = _COMPACT_JSON.encode(_query_body(out_task_id, task_id)).encode()
        what = f"the query of {out_task_id or task_id!r}"
        settings = await self.aget_settings()
        policy = self._retry_policy if self._retry_policy is not None else settings.retry_policy

        async def once() -> TaskInfo | None:
            payload = await self._apost_once(settings, "/query", data, what=what, out_task_id=out_task_id)
            try:
                return parse_query(payload, out_task_id=out_task_id, task_id=task_id)
            except AireiterTaskNotFoundError:
                if missing_ok:
                    return None
                raise

        return await policy.acall(
            once, what=what, log=self.log, stop_at=stop_at, poll_interval=poll_interval, give_up_after=give_up_after
        )

    async def _apost_once(
        self,
        settings: ConnectionSettings,
        path: str,
        data: bytes,
        *,
        what: str,
        out_task_id: str | None,
    ) -> dict[str, Any]:
        transport = _async_transport()
        timeout = self._timeout if self._timeout is not None else settings.timeout
        headers = {**self._headers(settings), "Content-Type": "application/json"}
        try:
            answer = await transport.loop_transport().post(settings.api_url + path, data, headers, timeout)
        except transport.TransportError as exc:
            raise network_error(what, exc.failure, out_task_id=out_task_id) from None
        return self._read(answer.status, answer.headers, answer.body, what=what, out_task_id=out_task_id)


# -------------------------------------------------------------------- helpers


def _async_transport() -> Any:
    """:mod:`.async_transport`, imported on the first async request (a DAG parse never imports aiohttp)."""
    global _ASYNC_TRANSPORT
    if _ASYNC_TRANSPORT is None:
        from airflow_provider_aireiter.hooks import async_transport

        _ASYNC_TRANSPORT = async_transport
    return _ASYNC_TRANSPORT


_ASYNC_TRANSPORT: Any = None
#: ``json.dumps`` with ``separators`` builds a new encoder on every call
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def _query_body(out_task_id: str | None, task_id: str | None) -> dict[str, str]:
    if not out_task_id and not task_id:
        raise AireiterInvalidRequestError("query needs out_task_id or task_id; both were empty.")
    return {"out_task_id": out_task_id} if out_task_id else {"task_id": str(task_id)}
