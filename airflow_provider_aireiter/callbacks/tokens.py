"""Per-task callback tokens: an HMAC of the ``out_task_id`` under the connection's signing secret.

A token is valid for one ``out_task_id`` only, so a callback URL leaked for one task cannot wake
another, and nothing else can be guessed without the secret. Compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

#: where the plugin is mounted on Airflow's API server
CALLBACK_MOUNT = "/aireiter"


def callback_token(secret: str, out_task_id: str) -> str:
    """The token for ``out_task_id`` (hex HMAC-SHA256, domain-separated)."""
    message = f"aireiter-callback-v1:{out_task_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def token_is_valid(secret: str, out_task_id: str, token: str) -> bool:
    """Whether ``token`` was made for ``out_task_id`` under ``secret`` (constant-time comparison)."""
    return hmac.compare_digest(callback_token(secret, out_task_id).encode(), (token or "").encode())


def callback_url(base_url: str, secret: str, out_task_id: str, conn_id: str) -> str:
    """The URL AIReiter should POST to when ``out_task_id`` finishes."""
    token = callback_token(secret, out_task_id)
    return (
        f"{base_url.rstrip('/')}{CALLBACK_MOUNT}/callback/{quote(conn_id, safe='')}/{quote(out_task_id, safe='')}"
        f"?token={token}"
    )


def redact_token(token: str) -> str:
    """A token as it may appear in logs: its first 6 characters only."""
    return (token or "")[:6] + "..."
