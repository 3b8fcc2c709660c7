"""pytest plugin with fixtures that run the AIReiter emulator.

Enable it with ``pytest_plugins = ["airflow_provider_aireiter.testing.emulator.pytest_plugin"]``
(or through the provider's ``pytest11`` entry point). Fixtures:

* ``aireiter_emulator`` - a started :class:`~.Emulator` on a free port,
  speed 100, stopped after the test.
* ``aireiter_connection`` - the same emulator, with
  ``AIRFLOW_CONN_AIREITER_DEFAULT`` set to ``emu.conn_json`` for the test.

Pass other constructor arguments with a marker::

    @pytest.mark.aireiter_emulator(speed=1000, credits=50, duplicate_policy="create_new")
    def test_something(aireiter_connection): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .emulator import CONN_ENV_VAR, Emulator

DEFAULT_SPEED = 100.0


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``aireiter_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "aireiter_emulator(**kwargs): keyword arguments for the Emulator of the aireiter_emulator fixture",
    )


@pytest.fixture
def aireiter_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running emulator (free port, speed 100 unless the marker says otherwise)."""
    options: dict[str, Any] = {"speed": DEFAULT_SPEED, "port": 0}
    marker = request.node.get_closest_marker("aireiter_emulator")
    if marker is not None:
        options.update(marker.kwargs)
    with Emulator(**options) as emu:
        yield emu


@pytest.fixture
def aireiter_connection(aireiter_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The running emulator, with ``AIRFLOW_CONN_AIREITER_DEFAULT`` pointing at it."""
    monkeypatch.setenv(CONN_ENV_VAR, aireiter_emulator.conn_json)
    yield aireiter_emulator
