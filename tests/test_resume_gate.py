"""The resume hold: its setting, and the rule both resume paths share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_aireiter.triggers.aireiter import (
    DEFAULT_SETTLE_SECONDS,
    resume_not_before,
    seconds_to_hold,
    settle_seconds,
)


@pytest.mark.parametrize(("value", "expected"), [(None, DEFAULT_SETTLE_SECONDS), ("0", 0.0), ("2.5", 2.5), ("-3", 0.0)])
def test_settle_seconds_comes_from_airflow_config(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: float
) -> None:
    if value is None:
        monkeypatch.delenv("AIRFLOW__AIREITER__RESUME_SETTLE_SECONDS", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__AIREITER__RESUME_SETTLE_SECONDS", value)
    assert settle_seconds() == expected
    assert resume_not_before(1000.0) == 1000.0 + expected


def test_hold_ends_at_not_before() -> None:
    assert seconds_to_hold(110.0, now=100.0) == 10.0
    assert seconds_to_hold(100.0, now=100.0) == 0.0
    assert seconds_to_hold(90.0, now=100.0) == 0.0


def test_the_option_is_registered_with_airflows_config(tmp_path: object) -> None:
    """``airflow config get-value`` knows the option and its default through the provider info."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__AIREITER__")}
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "get-value", "aireiter", "resume_settle_seconds"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) == DEFAULT_SETTLE_SECONDS
