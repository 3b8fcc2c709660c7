"""JSON envelopes and the HTML page the emulator answers with."""

from __future__ import annotations

import datetime as dt
from typing import Any

UNAUTHORIZED_MESSAGE = "unauthorized: invalid api key"

MARKETING_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AIReiter - AI image and video generation</title>
</head>
<body>
<header><h1>AIReiter</h1><p>One API for the best image and video models.</p></header>
<main>
<section><h2>Create stunning images</h2><p>Seedream, GPT Image, Nano Banana and more.</p></section>
<section><h2>Bring them to life</h2><p>Veo, Sora, Seedance and more.</p></section>
<p><a href="/pricing">See pricing</a> - <a href="/login">Sign in</a></p>
</main>
<footer><p>This page is served by the local AIReiter emulator, standing in for the
real site, which answers unknown routes and wrong methods with its home page.</p></footer>
</body>
</html>
"""


def ok(data: Any) -> dict[str, Any]:
    """Success envelope ``{"ok": true, "statusCode": 200, "message": "", "data": ...}``."""
    return {"ok": True, "statusCode": 200, "message": "", "data": data}


def business_error(status_code: int, message: str) -> dict[str, Any]:
    """Business error envelope; sent with HTTP 200 except for 401 (see server)."""
    return {"ok": True, "statusCode": status_code, "message": message, "data": None}


def unauthorized() -> dict[str, Any]:
    """Body of the 401 answer (sent with HTTP status 401 too)."""
    return {"ok": True, "statusCode": 401, "message": UNAUTHORIZED_MESSAGE}


def iso_ms(epoch: float) -> str:
    """Format an epoch time as ISO-8601 with milliseconds and ``Z``."""
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
