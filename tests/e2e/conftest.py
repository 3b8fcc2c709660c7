"""Pytest glue for the end-to-end tests that run against a real Airflow deployment.

Every test collected from this directory is marked ``e2e`` automatically (deselect
them with ``-m "not e2e"``).  To run DAGs of your own, request the module-scoped
``airflow_deployment_factory`` fixture from a module-scoped fixture of yours::

    from tests.e2e.deployment import AirflowDeployment  # for type hints

    DAGS = Path(__file__).parent / "my_dags"

    @pytest.fixture(scope="module")
    def deployment(airflow_deployment_factory):
        return airflow_deployment_factory(DAGS, env={"AIRFLOW_CONN_AIREITER_DEFAULT": "..."})

    def test_something(deployment):
        run_id = deployment.trigger("my_dag", conf={"prompt": "a cat"})
        assert deployment.wait_for_run("my_dag", run_id) == "success"

The deployment is started on the first request and torn down when the module is
done.  If a test of the module failed, the temporary workdir (logs, AIRFLOW_HOME)
is kept and its path printed to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent
_REPO_ROOT = str(E2E_DIR.parents[1])
if _REPO_ROOT not in sys.path:  # ``tests.e2e.deployment`` must import under every --import-mode
    sys.path.insert(0, _REPO_ROOT)

from tests.e2e.deployment import AirflowDeployment, DeploymentFactory  # noqa: E402


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
