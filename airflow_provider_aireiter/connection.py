"""The ``aireiter`` connection: what its fields mean, read in one place.

* host: the service root, ``https://aireiter.com`` when empty. A host without a scheme gets
  ``https://`` (and the port field, if any). The API lives under ``/api/openapi``.
* password: the API key, sent as ``Authorization: Bearer <key>``.
* extra ``timeout``: seconds per HTTP request (default 60).
* extra ``callback_base_url``: the public address of this Airflow's API server, as AIReiter can reach
  it; when set, operators send a ``callback_url`` under it.
* extra ``callback_secret``: the key that signs per-task callback tokens. Its name contains
  ``secret``, so Airflow's secrets masker hides its value in logs.
* extras ``max_attempts``, ``retry_base_delay``, ``retry_max_delay``, ``recheck_delay``,
  ``recheck_budget``: the hook's retry policy (see :class:`~airflow_provider_aireiter.retry.AireiterRetryPolicy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError
from airflow_provider_aireiter.retry import AireiterRetryPolicy

CONN_TYPE = "aireiter"
DEFAULT_CONN_ID = "aireiter_default"
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
