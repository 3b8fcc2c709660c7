"""Per-task callback tokens: an HMAC of the connection id and ``out_task_id`` under the connection's secret.

A token is valid for one ``out_task_id`` of one connection only, so a callback URL leaked for one task
cannot wake another, not even on another connection sharing the secret, and nothing else can be
guessed without the secret. Compared in constant time.

Tokens of the first format (``v1``, the ``out_task_id`` alone) are no longer accepted: their callbacks
get 403, and their tasks finish by polling.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, quote, urlencode

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
