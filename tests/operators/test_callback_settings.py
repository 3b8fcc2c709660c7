"""Callback settings are checked before anything is sent, and the task log says what was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import use_connection
from tests.operators.dagtest_helpers import run_dag, submit_bodies

GOOD_SECRET = "0123456789abcdef0123"

pytestmark = pytest.mark.usefixtures("airflow_db")


def _one_image(dag_id: str, tmp_path: Path) -> str:
    """The state of a run of a DAG of one image task."""
    state, _ = run_dag(dag_id, 'SeedreamV5LiteOperator(task_id="image", prompt="x")', tmp_path)
    return state


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"callback_base_url": "airflow.example.com", "callback_secret": GOOD_SECRET}, "callback_base_url"),
        ({"callback_base_url": "ftp://airflow.example.com", "callback_secret": GOOD_SECRET}, "callback_base_url"),
        ({"callback_base_url": "https://airflow.example.com?x=1", "callback_secret": GOOD_SECRET}, "callback_base_url"),
        ({"callback_base_url": "https://airflow.example.com", "callback_secret": "short-secret"}, "callback_secret"),
    ],
)
def test_bad_callback_settings_fail_the_test_button_naming_the_field(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], named: str
) -> None:
    use_connection(monkeypatch, aireiter_connection, **extra)
    ok, message = AireiterHook().test_connection()
    assert not ok and named in message
    assert "short-secret" not in message  # the secret's value never appears
    if named == "callback_base_url":
        assert repr(extra["callback_base_url"]) in message and "https://" in message


def test_half_configured_callbacks_are_reported_by_the_test_button(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, aireiter_connection, callback_base_url="https://airflow.example.com")
    ok, message = AireiterHook().test_connection()
    assert ok and "callbacks are off until callback_secret is set too" in message


def test_bad_callback_base_url_fails_before_the_submit(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, logs: Any
) -> None:
    use_connection(monkeypatch, aireiter_connection, callback_base_url="not a url", callback_secret=GOOD_SECRET)
    assert _one_image("bad_callback_url", tmp_path) == "failed"
    assert "callback_base_url='not a url'" in logs()
    assert submit_bodies(aireiter_connection) == []


def test_half_configured_callbacks_warn_once_and_poll(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, logs: Any
) -> None:
    use_connection(monkeypatch, aireiter_connection, callback_secret=GOOD_SECRET)
    body = """
    SeedreamV5LiteOperator.partial(task_id="image").expand(prompt=["a", "b", "c"])
    """
    state, _ = run_dag("half_callbacks", body, tmp_path)
    assert state == "success"
    text = logs()
    assert text.count("sets only one of callback_base_url and callback_secret (callback_base_url is missing)") == 1
    assert "no completion callback URL sent (polling only)" in text
    assert all("callback_url" not in body for body in submit_bodies(aireiter_connection))


def test_the_log_names_the_callback_url_but_never_its_token(
    aireiter_connection: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, logs: Any
) -> None:
    use_connection(
        monkeypatch, aireiter_connection, callback_base_url="http://127.0.0.1:9", callback_secret=GOOD_SECRET
    )
    assert _one_image("callback_logged", tmp_path) == "success"
    (submit,) = submit_bodies(aireiter_connection)
    url = submit["callback_url"].split("?", 1)[0]  # the emulator redacts the query string in its log
    assert url.startswith("http://127.0.0.1:9/aireiter/callback/aireiter_default/")
    from airflow_provider_aireiter.hooks.aireiter import callback_token

    token = callback_token(GOOD_SECRET, "aireiter_default", url.rsplit("/", 1)[1])
    text = logs()
    assert f"completion callback URL sent: {url} (token not shown)" in text
    assert token not in text and token[:12] not in text
