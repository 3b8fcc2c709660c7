"""``AireiterHook``: the ``aireiter`` connection and every HTTP call to AIReiter, retries included.

Sections, in order: the connection (what its fields mean, read in one place); callback URLs and
their per-task tokens; storing outputs (streamed under a temporary name, moved into place when
complete, with the record that lets the media view serve it); the messages of the connection form's
Test button; the hook itself. Behind it, :mod:`.transport` holds the HTTP and the reading of answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import mimetypes
import posixpath
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from airflow.sdk import BaseHook

from airflow_provider_aireiter import __version__
from airflow_provider_aireiter.compat import hook_lineage_collector
from airflow_provider_aireiter.exceptions import (
    AireiterAuthError,
    AireiterError,
    AireiterHtmlPageError,
    AireiterInvalidRequestError,
    AireiterResponseError,
    AireiterSubmitOutcomeUnknownError,
    AireiterTaskNotFoundError,
    AireiterTransientError,
    raise_if_failed,
    timeout_error,
)
from airflow_provider_aireiter.get_provider_info import CONN_TYPE, DEFAULT_CONN_ID
from airflow_provider_aireiter.hooks.transport import (
    COULD_NOT_CONNECT,
    TIMEOUT_ANSWERING,
    TIMEOUT_CONNECTING,
    TLS_CERTIFICATE,
    TLS_FAILED,
    SubmitResult,
    TaskInfo,
    TransportError,
    TransportFailure,
    from_requests,
    loop_transport,
    network_error,
    parse_query,
    parse_submit,
    preview,
    read_answer,
)
from airflow_provider_aireiter.retry import AireiterRetryPolicy, StatusWatcher, WaitQueries

if TYPE_CHECKING:
    import requests


# -------------------------------------------------------------- the connection


DEFAULT_BASE_URL = "https://aireiter.com"
API_PREFIX = "/api/openapi"
DEFAULT_TIMEOUT = 60.0
#: what an API key may contain: visible ASCII, as a Bearer token must
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
#: shortest callback signing secret accepted
MIN_CALLBACK_SECRET_CHARS = 16


@dataclass(frozen=True)
class ConnectionSettings:
    """The parts of an ``aireiter`` connection the provider uses. The secrets are left out of ``repr``."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    callback_base_url: str | None = None
    callback_secret: str | None = field(default=None, repr=False)
    retry_policy: AireiterRetryPolicy = field(default_factory=AireiterRetryPolicy)

    @property
    def api_url(self) -> str:
        """Root of the API endpoints (``.../api/openapi``)."""
        return self.base_url + API_PREFIX

    @property
    def callbacks_enabled(self) -> bool:
        """Whether operators can send a signed ``callback_url``."""
        return bool(self.callback_base_url and self.callback_secret)

    @property
    def callbacks_half_configured(self) -> str | None:
        """Which callback extra is missing when only one of the two is set (callbacks are then off)."""
        if bool(self.callback_base_url) == bool(self.callback_secret):
            return None
        return "callback_secret" if self.callback_base_url else "callback_base_url"

    def check_callback_settings(self) -> None:
        """Refuse a ``callback_base_url`` that is not an http(s) URL without query, or a too-short secret.

        :raises AireiterInvalidRequestError: naming the extra, its value (never the secret's) and what is allowed.
        """
        if self.callback_base_url:
            parts = urlsplit(self.callback_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise AireiterInvalidRequestError(
                    f"The connection {self.conn_id!r} has callback_base_url={self.callback_base_url!r}; it must be "
                    "an http:// or https:// URL of this Airflow's API server as AIReiter reaches it, without a "
                    "query or fragment, e.g. https://airflow.example.com or https://example.com/airflow."
                )
        if self.callback_secret and len(self.callback_secret) < MIN_CALLBACK_SECRET_CHARS:
            raise AireiterInvalidRequestError(
                f"The connection {self.conn_id!r} has a callback_secret of {len(self.callback_secret)} characters; "
                f"it must have at least {MIN_CALLBACK_SECRET_CHARS} (e.g. the output of "
                'python -c "import secrets; print(secrets.token_hex(32))").'
            )


def _base_url(host: str | None, port: int | None) -> str:
    host = (host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = f"https://{host}" + (f":{port}" if port else "")
    if host.endswith(API_PREFIX):
        host = host[: -len(API_PREFIX)]
    return host


def _extra(conn: Any) -> dict[str, Any]:
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    # Accept both plain keys and the UI's historic ``extra__aireiter__<name>`` prefix.
    result: dict[str, Any] = {}
    for key, value in (extra or {}).items():
        name = key.removeprefix(f"extra__{CONN_TYPE}__")
        if value not in (None, ""):
            result[name] = value
    return result


def settings_from_connection(conn: Any) -> ConnectionSettings:
    """Read an Airflow connection (SDK or core model) into :class:`ConnectionSettings`."""
    extra = _extra(conn)
    api_key = (conn.password or "").strip()
    if not api_key:
        raise AireiterInvalidRequestError(
            f"The connection {conn.conn_id!r} has no API key. Put your AIReiter API key in its "
            "password field (UI: 'API key'; env var: the password part of the URI or \"password\" in JSON)."
        )
    if not _HEADER_SAFE.fullmatch(api_key):
        # Sent as a header: a line break would inject headers, a non-ASCII character cannot be sent at all.
        raise AireiterInvalidRequestError(
            f"The connection {conn.conn_id!r} has an API key (password field) with characters an HTTP header "
            "cannot carry (spaces, control characters, line breaks or non-ASCII letters). Paste the key from "
            "the AIReiter console again; it is not shown here."
        )
    timeout_raw = extra.get("timeout", DEFAULT_TIMEOUT)
    try:
        timeout = float(timeout_raw)
        if timeout <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise AireiterInvalidRequestError(
            f"The connection {conn.conn_id!r} has timeout={timeout_raw!r}; it must be a positive number of seconds."
        ) from None
    callback_base = str(extra["callback_base_url"]).rstrip("/") if extra.get("callback_base_url") else None
    retry_policy = _retry_policy(conn.conn_id, extra)
    return ConnectionSettings(
        conn_id=conn.conn_id,
        base_url=_base_url(conn.host, conn.port),
        api_key=api_key,
        timeout=timeout,
        callback_base_url=callback_base,
        callback_secret=str(extra["callback_secret"]) if extra.get("callback_secret") else None,
        retry_policy=retry_policy,
    )


#: connection extra -> AireiterRetryPolicy field
_RETRY_EXTRAS = {
    "max_attempts": "max_attempts",
    "retry_base_delay": "base_delay",
    "retry_max_delay": "max_delay",
    "recheck_delay": "recheck_delay",
    "recheck_budget": "recheck_budget",
}


def _retry_policy(conn_id: str, extra: dict[str, Any]) -> AireiterRetryPolicy:
    values: dict[str, Any] = {}
    for name, attribute in _RETRY_EXTRAS.items():
        if name not in extra:
            continue
        raw = extra[name]
        try:
            number = float(raw)
            if number < 0 or isinstance(raw, bool):
                raise ValueError
            if attribute == "max_attempts":
                if number < 1 or number != int(number):
                    raise ValueError
                number = int(number)
        except (TypeError, ValueError):
            wanted = "a whole number of at least 1" if attribute == "max_attempts" else "a number of seconds >= 0"
            raise AireiterInvalidRequestError(
                f"The connection {conn_id!r} has {name}={raw!r}; it must be {wanted}."
            ) from None
        values[attribute] = number
    return AireiterRetryPolicy(**values)


# ---------------------------------------------- callback URLs and their tokens
#: where the plugin is mounted on Airflow's API server
CALLBACK_MOUNT = "/aireiter"


def callback_token(secret: str, conn_id: str, out_task_id: str) -> str:
    """The token for ``out_task_id`` of connection ``conn_id`` (hex HMAC-SHA256, domain-separated)."""
    # The length prefix keeps ("a:b", "c") and ("a", "b:c") apart.
    message = f"aireiter-callback-v2:{len(conn_id)}:{conn_id}:{out_task_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def token_is_valid(secret: str, conn_id: str, out_task_id: str, token: str) -> bool:
    """Whether ``token`` was made for ``out_task_id`` of ``conn_id`` under ``secret`` (constant time)."""
    return hmac.compare_digest(callback_token(secret, conn_id, out_task_id).encode(), (token or "").encode())


def callback_url(base_url: str, secret: str, out_task_id: str, conn_id: str) -> str:
    """The URL AIReiter should POST to when ``out_task_id`` finishes."""
    token = callback_token(secret, conn_id, out_task_id)
    return (
        f"{base_url.rstrip('/')}{CALLBACK_MOUNT}/callback/{quote(conn_id, safe='')}/{quote(out_task_id, safe='')}"
        f"?token={token}"
    )


def redact_token(token: str) -> str:
    """A token as it may appear in logs: its first 6 characters only."""
    return (token or "")[:6] + "..."


def redact_query(query: bytes) -> bytes:
    """A request's raw query string with every ``token`` value shortened by :func:`redact_token`.

    Parsed as Starlette parses it for the receiver, so whatever it reads as the token is what is redacted.
    """
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not any(key == "token" for key, _ in pairs):
        return query
    return urlencode([(k, redact_token(v) if k == "token" else v) for k, v in pairs]).encode("latin-1")


# ------------------------------------------------------------- storing outputs
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpeg",
    "image/jpg": ".jpeg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}


@dataclass(frozen=True)
class DownloadedFile:
    """Where one output went: ``path`` as a URI-like string, its content type and size in bytes."""

    url: str
    path: str
    content_type: str | None
    size: int
    reused: bool = False


def extension_for(content_type: str | None, url: str) -> str:
    """The file extension for a content type, else the URL's own suffix, else ``.bin``."""
    if content_type:
        base = content_type.split(";")[0].strip().lower()
        if base in _EXTENSIONS:
            return _EXTENSIONS[base]
        guessed = mimetypes.guess_extension(base)
        if guessed:
            return guessed
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower()
    return suffix if 1 < len(suffix) <= 6 else ".bin"


def check_output_url(url: str) -> None:
    """Only http(s) output URLs are fetched (never ``file://`` or anything else)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise AireiterInvalidRequestError(
            f"Refusing to download output URL with scheme {scheme!r}: only http and https URLs are fetched."
        )


def existing_output(directory: Any, stem: str, url: str) -> DownloadedFile | None:
    """A complete file from an earlier try: ``<stem>.<any extension>`` in ``directory``, if there is one.

    The extension is not predicted: it came from the content type the earlier try was served (which
    only the server knows), so an ``out.jpg`` saved as ``.jpeg`` or an extension-less URL saved as
    ``.png`` is found all the same. Only complete files carry the final name (see the module docstring).
    """
    try:
        if not directory.exists():
            return None
        candidates = sorted(p for p in directory.iterdir() if _is_final_name_of(p.name, stem))
    except FileNotFoundError:
        return None
    if not candidates:
        return None
    found = candidates[0]
    size = found.stat().st_size
    content_type = mimetypes.guess_type(found.name)[0]
    return DownloadedFile(url=url, path=str(found), content_type=content_type, size=size, reused=True)


def _is_final_name_of(name: str, stem: str) -> bool:
    """``<stem>.<ext>`` (one suffix, no temporary ``.part`` file)."""
    if not name.startswith(stem + "."):
        return False
    suffix = name[len(stem) :]
    return suffix.count(".") == 1 and 1 < len(suffix) <= 8 and not suffix.endswith(".part")


def stream_to_path(
    url: str, directory: Any, stem: str, *, timeout: float, user_agent: str, chunk_size: int = 1024 * 1024
) -> DownloadedFile:
    """GET ``url`` and stream it to ``directory/<stem><ext>`` (``directory``: an ``ObjectStoragePath``)."""
    import requests

    check_output_url(url)
    what = f"the download of {url.split('?')[0]}"
    try:
        response = requests.get(url, stream=True, timeout=timeout, headers={"User-Agent": user_agent})
    except requests.exceptions.RequestException as exc:
        raise network_error(what, from_requests(exc), out_task_id=None) from None
    with response:
        if response.status_code >= 500 or response.status_code == 429:
            raise AireiterTransientError(f"HTTP {response.status_code} on {what}; it is retried.")
        if response.status_code != 200:
            raise AireiterResponseError(
                f"HTTP {response.status_code} on {what}. The output URL may have expired: download "
                "outputs promptly after completion."
            )
        content_type = response.headers.get("Content-Type")
        expected = response.headers.get("Content-Length")
        final = directory / (stem + extension_for(content_type, url))
        partial = directory / f".{stem}.{uuid.uuid4().hex[:8]}.part"
        directory.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with _untracked_open(partial, "wb") as sink:
                for chunk in response.iter_content(chunk_size=chunk_size):
                    sink.write(chunk)
                    written += len(chunk)
        except requests.exceptions.RequestException as exc:
            _remove_quietly(partial)
            failure = from_requests(exc)
            raise network_error(
                f"{what} (the connection broke after {written} bytes)",
                TransportFailure(failure.detail),
                out_task_id=None,
            ) from None
        except BaseException:
            _remove_quietly(partial)
            raise
        if expected is not None and expected.isdigit() and int(expected) != written:
            _remove_quietly(partial)
            raise AireiterTransientError(
                f"{what.capitalize()} was cut short: {written} of {expected} bytes; it is retried."
            )
        partial.rename(final)
    hook_lineage_collector().add_output_asset(context=final, uri=str(final))  # the final file, never the .part
    return DownloadedFile(url=url, path=str(final), content_type=content_type, size=written)


def _untracked_open(path: Any, mode: str) -> Any:
    """Open ``path`` (an ``ObjectStoragePath``) past its hook-level lineage, which would report every file
    written through ``path.open()`` as the task's output: here a temporary ``.part`` file or a record."""
    return path.fs.open(path.path, mode)


def record_name(file_name: str) -> str:
    """The name of the record written next to a stored output (hidden, so it is never taken for one)."""
    return f".{file_name}.aireiter.json"


def output_record(dag_id: str, run_id: str, task_id: str, map_index: int, index: int, size: int) -> dict[str, Any]:
    """What is recorded next to a stored output: the task instance it was stored for, and its size.

    The media view serves a stored file only when this record names the very task instance and output
    index whose result points at it (``media_view/records.py``). Users who can edit an XCom cannot write
    to the media storage, so an edited result cannot point the view at a file stored for anything else.
    """
    return {
        "aireiter_output": 1,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "index": index,
        "size": size,
    }


def write_output_record(directory: Any, stored: DownloadedFile, record: dict[str, Any]) -> None:
    """Write ``record`` next to ``stored`` (overwritten by a retry: the same task instance, the same file)."""
    name = posixpath.basename(urlsplit(stored.path).path if "://" in stored.path else stored.path)
    with _untracked_open(directory / record_name(name), "w") as sink:
        sink.write(json.dumps(record, sort_keys=True))


def _remove_quietly(path: Any) -> None:
    with contextlib.suppress(Exception):  # best-effort clean-up of a temporary file
        path.unlink()


# ------------------------------------------- the connection form's Test button
EXAMPLE = "https://aireiter.com"


def scheme_assumed(host: str | None) -> bool:
    """Whether the Base URL was entered without ``http://``/``https://`` (the provider then assumes https)."""
    host = (host or "").strip()
    return bool(host) and "://" not in host


def success_message(base_url: str, callbacks_missing: str | None) -> str:
    if callbacks_missing:
        return (
            f"Connected to AIReiter at {base_url} and the API key was accepted, but callbacks are off until "
            f"{callbacks_missing} is set too."
        )
    return f"Connected to AIReiter at {base_url} and the API key was accepted."


def failure_message(error: AireiterError, base_url: str, entered_host: str | None) -> str:
    """The sentence for a failed Test."""
    if isinstance(error, AireiterAuthError):
        return (
            f"AIReiter at {base_url} rejected the API key: paste a valid key from the AIReiter console into "
            "the API key field."
        )
    detail = error.transport_detail if isinstance(error, AireiterTransientError) else None
    if detail in (TLS_FAILED, TLS_CERTIFICATE) and scheme_assumed(entered_host):
        plain = "http://" + str(entered_host).strip()
        return (
            f"The TLS handshake with {base_url} failed because Base URL {entered_host!r} has no scheme and "
            f"https:// was assumed: write {plain} if that server speaks plain HTTP."
        )
    if detail == TLS_CERTIFICATE:
        return f"The TLS certificate of {base_url} was not accepted: fix the server's certificate or Base URL."
    if detail == TLS_FAILED:
        return f"The TLS handshake with {base_url} failed: check that Base URL's scheme and port are right."
    if detail in (COULD_NOT_CONNECT, TIMEOUT_CONNECTING):
        how = "" if detail == COULD_NOT_CONNECT else f" ({detail})"
        return (
            f"Could not connect to {base_url}{how}: check the host and port in Base URL and that this API "
            "server can reach it."
        )
    if detail == TIMEOUT_ANSWERING:
        return (
            f"{base_url} accepted the connection but did not answer in time: check that Base URL is the "
            "AIReiter service, or raise the request timeout."
        )
    if detail is not None:
        return f"The connection to {base_url} broke ({detail}): check Base URL and the network in between."
    code = error.service_code
    if code is not None and code >= 500:
        return (
            f"{base_url} answered HTTP {code} (a server error): check that Base URL is the AIReiter service "
            f"root, e.g. {EXAMPLE}, and if it is, the service has a problem right now."
        )
    if isinstance(error, AireiterHtmlPageError):
        return (
            f"{base_url} answered with an HTML page, not AIReiter's JSON API: set Base URL to the service "
            f"root, e.g. {EXAMPLE} (without /api/openapi)."
        )
    if code is not None and code != 200:
        return (
            f"{base_url} answered HTTP {code} to AIReiter's status query: set Base URL to the service root, "
            f"e.g. {EXAMPLE}."
        )
    return f"{base_url} did not answer like AIReiter ({error.message}): set Base URL to the service root."


# -------------------------------------------------------------------- the hook
T = TypeVar("T")
USER_AGENT = f"airflow-provider-aireiter/{__version__} (+Apache Airflow provider)"


class AireiterHook(BaseHook):
    """Talk to the AIReiter API through an ``aireiter`` connection.

    One ``requests.Session`` per hook (connections are reused); the async path shares one small
    aiohttp session per event loop (:class:`~.transport.LoopTransport`), so thousands of triggers use a
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
            self._settings = await loop_transport().connection_settings(self.aireiter_conn_id, self._fetch_settings)
        return self._settings

    async def _fetch_settings(self) -> ConnectionSettings:
        return settings_from_connection(await self.aget_connection(self.aireiter_conn_id))

    @property
    def retry_policy(self) -> AireiterRetryPolicy:
        """The policy given to the hook, else the connection's."""
        return self._retry_policy if self._retry_policy is not None else self.settings.retry_policy

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
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("AIReiter answered HTTP %s: %s", response.status_code, preview(response.content))
        return read_answer(response.status_code, response.headers, response.content, what=what, out_task_id=out_task_id)

    def _retrying(self, call: Callable[[], T], *, what: str) -> T:
        """``call()``, retried on transient failures by the policy (tenacity)."""
        return self.retry_policy.retrying(what=what, log=self.log)(call)

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

        def send() -> SubmitResult:
            try:
                payload = self._post_once("/submit", body, what=what, out_task_id=out_task_id)
                return parse_submit(payload, out_task_id=out_task_id)
            except AireiterInvalidRequestError as error:
                if error.service_code is None:  # refused here, before anything was sent
                    raise
                # The service refused the submit. Its answer to a taken out_task_id is not documented,
                # so the message is not read: one query tells whether the id is taken (then that task
                # is ours from an earlier send) or the refusal stands.
                existing = self._recheck_submit(out_task_id, error, wait=False)
                if existing is None:
                    raise
                return self._reattached(existing, out_task_id, "AIReiter already has")
            except AireiterError as error:
                if not (error.retryable and getattr(error, "maybe_processed", True)):
                    raise  # certainly not processed (or not retryable): the policy decides
                existing = self._recheck_submit(out_task_id, error)
                if existing is not None:
                    return self._reattached(existing, out_task_id, "The earlier submit did reach AIReiter:")
                raise  # a definite "not found": the submit did not land, sending it again is safe

        # One tenacity loop: a retryable failure is sent again only once the re-check said "not found".
        return self._retrying(send, what=what)

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
        deadline: float | None = None,
        give_up_after: float | None = None,
        not_found_grace: float | None = None,
        known: TaskInfo | None = None,
    ) -> TaskInfo:
        """Poll until the task finishes; log each status change with the elapsed time.

        A failed query (5xx, 429, a reset, a timeout, a garbled body) does not end the wait: it is
        asked again after a backoff capped by ``poll_interval`` until the service answers (see
        :class:`~airflow_provider_aireiter.retry.WaitQueries`). Only an error
        no retry can fix, the deadline, or the optional budgets below end it.

        :param timeout: seconds to wait from now (ignored when ``deadline`` is given).
        :param deadline: absolute wall-clock time (epoch seconds) to give up at.
        :param give_up_after: seconds without any answer after which the wait fails with the last
            (retryable) error; ``None`` (default): ride out failures until the deadline.
        :param not_found_grace: seconds the service may say "api task not found" before the wait fails
            with :class:`AireiterTaskNotFoundError`; ``None`` (default): wait for the task to appear.
        :param known: the task as just read (e.g. found by a reattach): not asked again before ``poll_interval``.
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

        queries = self.retry_policy.wait_queries(
            what=what, log=self.log, stop_at=deadline, poll_interval=poll_interval, give_up_after=give_up_after
        )

        while True:
            try:
                info = known if known is not None else queries.call(find_once)
            except AireiterError as error:
                if error.retryable and time.time() >= deadline:
                    raise timeout_error(out_task_id, time.time() - started, info, last_error=error.message) from None
                raise
            known = None
            watcher.observe(info, not_found_grace=not_found_grace)
            if info is not None and info.is_terminal:
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

        See "storing outputs" above. ``directory`` is an ``ObjectStoragePath``.
        """
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
        queries: WaitQueries | None = None,
    ) -> TaskInfo | None:
        """Async :meth:`find_task`. As one query of a wait (``queries``, from :meth:`await_queries`, or
        ``poll_interval`` and ``stop_at``): retried until an answer, ``stop_at``, or ``give_up_after``
        seconds without one (see :class:`~airflow_provider_aireiter.retry.WaitQueries`)."""
        if queries is None and poll_interval is not None and stop_at is not None:
            queries = await self.await_queries(
                out_task_id, stop_at=stop_at, poll_interval=poll_interval, give_up_after=give_up_after
            )
        return await self._aquery(out_task_id, None, stop_at=stop_at, missing_ok=True, queries=queries)

    async def await_queries(
        self, out_task_id: str, *, stop_at: float, poll_interval: float, give_up_after: float | None = None
    ) -> WaitQueries:
        """The retrying of a wait's queries for ``out_task_id``, set up once for the whole wait."""
        settings = await self.aget_settings()
        policy = self._retry_policy if self._retry_policy is not None else settings.retry_policy
        return policy.wait_queries(
            what=f"the query of {out_task_id!r}",
            log=self.log,
            stop_at=stop_at,
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
        queries: WaitQueries | None = None,
    ) -> TaskInfo | None:
        data = json.dumps(_query_body(out_task_id, task_id)).encode()
        what = f"the query of {out_task_id or task_id!r}"
        settings = await self.aget_settings()

        async def once() -> TaskInfo | None:
            try:
                payload = await self._apost_once(settings, "/query", data, what=what, out_task_id=out_task_id)
                return parse_query(payload, out_task_id=out_task_id, task_id=task_id)
            except AireiterTaskNotFoundError:
                if missing_ok:
                    return None
                raise

        if queries is not None:
            return await queries.acall(once)
        policy = self._retry_policy if self._retry_policy is not None else settings.retry_policy
        return await policy.acall(once, what=what, log=self.log, stop_at=stop_at)

    async def _apost_once(
        self,
        settings: ConnectionSettings,
        path: str,
        data: bytes,
        *,
        what: str,
        out_task_id: str | None,
    ) -> dict[str, Any]:
        timeout = self._timeout if self._timeout is not None else settings.timeout
        headers = {**self._headers(settings), "Content-Type": "application/json"}
        try:
            answer = await loop_transport().post(settings.api_url + path, data, headers, timeout)
        except TransportError as exc:
            raise network_error(what, exc.failure, out_task_id=out_task_id) from None
        return read_answer(answer.status, answer.headers, answer.body, what=what, out_task_id=out_task_id)


# -------------------------------------------------------------------- helpers


def _query_body(out_task_id: str | None, task_id: str | None) -> dict[str, str]:
    if not out_task_id and not task_id:
        raise AireiterInvalidRequestError("query needs out_task_id or task_id; both were empty.")
    return {"out_task_id": out_task_id} if out_task_id else {"task_id": str(task_id)}
