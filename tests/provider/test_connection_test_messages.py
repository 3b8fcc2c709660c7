"""The connection form's Test answers: one sentence each, naming what to fix (real HTTP to local servers)."""

from __future__ import annotations

import re

import pytest

from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import conn_json
from tests.scripted_server import Answer, ScriptedServer


def _one_sentence(message: str) -> bool:
    # A sentence ends at ". " followed by a capital letter; "e.g. https://..." does not end one.
    return message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)


def _test(monkeypatch: pytest.MonkeyPatch, host: str, key: str = "test-key") -> tuple[bool, str]:
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(host, key, timeout=5))
    ok, message = AireiterHook().test_connection()
    assert _one_sentence(message), message
    assert key not in message
    return ok, message


def test_right_and_wrong_key_against_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(port=0) as emu:
        ok, message = _test(monkeypatch, emu.base_url, emu.api_key)
        assert ok and message == f"Connected to AIReiter at {emu.base_url} and the API key was accepted."
        ok, message = _test(monkeypatch, emu.base_url, "not-the-key")
        assert not ok and "rejected the API key" in message and "API key field" in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer(405, {"detail": "Method Not Allowed"}), "answered HTTP 405 to AIReiter's status query: set Base URL"),
        (Answer(501, "<html><body>Not Implemented</body></html>"), "answered HTTP 501 (a server error): check that"),
        (Answer(200, "<html><body>Welcome</body></html>"), "answered with an HTML page, not AIReiter's JSON API"),
        (Answer(404, "<html><body>Not Found</body></html>"), "answered HTTP 404 to AIReiter's status query"),
    ],
)
def test_a_server_that_is_not_aireiter_is_named(monkeypatch: pytest.MonkeyPatch, answer: Answer, expected: str) -> None:
    with ScriptedServer() as server:
        server.default = answer
        ok, message = _test(monkeypatch, server.base_url)
    assert not ok and expected in message, message
    assert "retry the task" not in message.lower() and "without a data object" not in message


def test_missing_scheme_says_https_was_assumed(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer() as server:
        host = server.base_url.removeprefix("http://")
        ok, message = _test(monkeypatch, host)
    assert not ok, message
    assert f"Base URL '{host}' has no scheme and https:// was assumed: write http://{host}" in message


def test_unreachable_host_names_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer() as server:
        closed = server.base_url
    ok, message = _test(monkeypatch, closed)
    assert not ok and message.startswith(f"Could not connect to {closed}: check the host and port in Base URL")
