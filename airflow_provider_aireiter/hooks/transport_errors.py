"""The one mapping from transport failures to the provider's errors, for every HTTP path.

``requests`` (the worker's API calls and downloads) and aiohttp (the triggers) fail in their own
exception types; each is first read as a :class:`TransportFailure` (what happened, and whether the
request may have reached the service), and :func:`network_error` turns that into the provider's
error. So the same fault gives the same error and the same message on a worker and in the triggerer.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_aireiter.exceptions import AireiterTransientError

TIMEOUT_CONNECTING = "timed out connecting"
TIMEOUT_ANSWERING = "timed out waiting for the answer"
COULD_NOT_CONNECT = "could not connect"
RESET = "connection was reset or closed"
TLS_CERTIFICATE = "TLS certificate check failed"
TLS_FAILED = "TLS failed"
TOO_LARGE = "the answer is larger than allowed"


@dataclass(frozen=True)
class TransportFailure:
    """What went wrong on the wire.

    :param detail: one of the phrases above (or an exception's class name).
    :param sent: whether the request may have reached the service (``False``: it certainly did not).
    """

    detail: str
    sent: bool = True


def network_error(what: str, failure: TransportFailure, *, out_task_id: str | None) -> AireiterTransientError:
    """The provider's error for a transport failure during ``what`` (e.g. "the query of 'x'")."""
    # A submit that may have been sent is never sent again before the service is asked (see submit()).
    error = AireiterTransientError(
        f"Network problem on {what}: {failure.detail}. Check that the AIReiter base URL is reachable from "
        "this machine.",
        out_task_id=out_task_id,
        maybe_processed=failure.sent,
    )
    error.transport_detail = failure.detail
    return error


def _tls_detail(exc: BaseException) -> str:
    return TLS_CERTIFICATE if "CERTIFICATE_VERIFY_FAILED" in str(exc) else TLS_FAILED


def from_requests(exc: Exception) -> TransportFailure:
    """Read a ``requests`` exception."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportFailure(TIMEOUT_CONNECTING, sent=False)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportFailure(TIMEOUT_ANSWERING)
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportFailure(_tls_detail(exc), sent=False)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return TransportFailure(RESET)  # the answer was cut or garbled in transit
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _is_connect_failure(exc):
            return TransportFailure(COULD_NOT_CONNECT, sent=False)
        return TransportFailure(RESET)
    return TransportFailure(type(exc).__name__)


def from_aiohttp(exc: BaseException, *, connecting: bool) -> TransportFailure:
    """Read an aiohttp exception (or a timeout); ``connecting``: whether it happened before sending."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return TransportFailure(_tls_detail(exc), sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportFailure(COULD_NOT_CONNECT, sent=False)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return TransportFailure(TIMEOUT_CONNECTING, sent=False) if connecting else TransportFailure(TIMEOUT_ANSWERING)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return TransportFailure(RESET)
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed answer (bad status line, headers)
        return TransportFailure(RESET)
    return TransportFailure(type(exc).__name__)


def _is_connect_failure(exc: Exception) -> bool:
    """Whether a ``requests`` connection error happened before the request was sent."""
    import urllib3.exceptions

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False
