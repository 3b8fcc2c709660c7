"""The one-sentence answers of the connection form's Test button, each naming what to fix.

The hook's :meth:`~airflow_provider_aireiter.hooks.aireiter.AireiterHook.test_connection` queries an id
that cannot exist; this module turns its outcome into the sentence the UI shows. A Test is one call,
not a task: no message tells to retry a task.
"""

from __future__ import annotations

from airflow_provider_aireiter.exceptions import (
    AireiterAuthError,
    AireiterError,
    AireiterHtmlPageError,
    AireiterTransientError,
)
from airflow_provider_aireiter.hooks.transport_errors import (
    COULD_NOT_CONNECT,
    TIMEOUT_ANSWERING,
    TIMEOUT_CONNECTING,
    TLS_CERTIFICATE,
    TLS_FAILED,
)

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
