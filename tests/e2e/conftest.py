"""Pytest glue for the end-to-end tests that run against a real Airflow deployment.

Every test collected from this directory is marked ``e2e`` automatically (deselect
them with ``-m "not e2e"``).  A test module states its deployment as ``SETUP``::

    from tests.e2e.deployment import AirflowDeployment, Connection, Setup

    SETUP = Setup(
        name="my-module",
        dag_files=[Path(__file__).parent / "my_dags" / "my_dags.py"],
        connections={"aireiter_default": Connection(callbacks_to=0), "aireiter_polling": Connection()},
        emulator={"durations": {"*": (1.0, 2.0)}},
    )

    def test_something(deployment: AirflowDeployment, emulator: Emulator, media: Path):
        run_id = deployment.trigger("my_dag", conf={"prompt": "a cat"})
        assert deployment.wait_for_run("my_dag", run_id) == "success"

and gets the module-scoped fixtures ``emulator``, ``media`` and ``deployment`` (see
:class:`deployment.Setup`).  A deployment of another kind comes from the module-scoped
``airflow_deployment_factory`` fixture, ``start(dags_folder, env=None, **kwargs)``, called
from a module-scoped fixture of the test module's own.

The deployment is started on the first request and torn down when the module is
done.  If a test of the module failed, the temporary workdir (logs, AIRFLOW_HOME)
is kept and its path printed to stderr.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent
_REPO_ROOT = str(E2E_DIR.parents[1])
if _REPO_ROOT not in sys.path:  # ``tests.e2e.deployment`` must import under every --import-mode
    sys.path.insert(0, _REPO_ROOT)

from airflow_provider_aireiter.testing.emulator import Emulator  # noqa: E402
from tests.conftest import conn_json  # noqa: E402
from tests.e2e.deployment import AirflowDeployment, DeploymentFactory, Setup, free_port  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test against a real Airflow deployment "
        "(PostgreSQL, api-server, scheduler, dag-processor, triggerer)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def airflow_deployment_factory(request: pytest.FixtureRequest) -> Iterator[DeploymentFactory]:
    """Return ``start(dags_folder, env=None, **kwargs) -> AirflowDeployment``.

    ``kwargs`` are passed to :class:`deployment.AirflowDeployment`.  Each call starts
    a deployment (blocking until it is healthy); all of them are stopped at the end
    of the requesting module.
    """
    started: list[AirflowDeployment] = []
    failures_before = request.session.testsfailed

    def start(dags_folder: Path | str, env: dict[str, str] | None = None, **kwargs: Any) -> AirflowDeployment:
        dep = AirflowDeployment(dags_folder, env, **kwargs)
        started.append(dep)
        dep.start()  # tears itself down if startup fails
        return dep

    yield start

    failed = request.session.testsfailed > failures_before
    for dep in reversed(started):
        if failed:
            dep.mark_failed()
        dep.stop()
    # Teardown is part of what the harness promises: nothing of a deployment outlives it.
    left = {dep.api_url: dep.leftover_processes() for dep in started}
    assert not any(left.values()), f"processes left behind: {left}"


# ---------------------------------------------------------------------- a module's deployment, from its SETUP


@pytest.fixture(scope="module")
def e2e_setup(request: pytest.FixtureRequest) -> Setup:
    """The requesting module's ``SETUP``."""
    setup = getattr(request.module, "SETUP", None)
    if not isinstance(setup, Setup):
        pytest.fail(f"{request.module.__name__} states no SETUP = tests.e2e.deployment.Setup(...)", pytrace=False)
    return setup


@pytest.fixture(scope="module")
def emulator(e2e_setup: Setup) -> Iterator[Emulator]:
    """The AIReiter emulator at real speed (``speed=1.0``) on a free port, configured by ``SETUP.emulator``."""
    with Emulator(speed=1.0, port=0, **e2e_setup.emulator) as emu:
        yield emu


@pytest.fixture(scope="module")
def media(e2e_setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the DAGs store their outputs in (``AIREITER_MEDIA_ROOT``)."""
    return tmp_path_factory.mktemp(f"{e2e_setup.name}-media")


def setup_environment(setup: Setup, emulator: Emulator, media: Path, api_ports: list[int]) -> dict[str, str]:
    """The Airflow processes' environment that ``setup`` asks for: its connections, the media folder, its env."""
    env = {}
    for conn_id, conn in setup.connections.items():
        callbacks = (
            {}
            if conn.callbacks_to is None
            else {"callback_base_url": f"http://127.0.0.1:{api_ports[conn.callbacks_to]}"}
        )
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn_json(
            emulator.base_url, emulator.api_key, **callbacks, **conn.extra
        )
    env["AIREITER_MEDIA_ROOT"] = str(media)
    if setup.serve_media:
        env["AIRFLOW__AIREITER__MEDIA_ROOTS"] = f"file://{media}"
    return {**env, **setup.env}


@pytest.fixture(scope="module")
def deployment(
    airflow_deployment_factory: DeploymentFactory,
    e2e_setup: Setup,
    emulator: Emulator,
    media: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AirflowDeployment:
    """The module's deployment: ``SETUP.dag_files`` in a DAGs folder of their own, on ports known beforehand."""
    dags = tmp_path_factory.mktemp(f"{e2e_setup.name}-dags")
    for path in e2e_setup.dag_files:
        shutil.copy(path, dags / path.name)
    ports = [free_port() for _ in range(e2e_setup.api_servers)]  # the callback URLs name them
    env = setup_environment(e2e_setup, emulator, media, ports)
    return airflow_deployment_factory(dags, env=env, api_ports=ports, **e2e_setup.options)
