"""Every example DAG imports cleanly, uses the package's classes, and runs to success with dag.test()."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import DAGS_FOLDER, load_dag_file
from tests.operators.dagtest_helpers import is_mp4, png_size, submit_bodies

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
EXAMPLE_FILES = sorted(EXAMPLES.glob("example_*.py"))


def package_classes() -> set[str]:
    names = set()
    for module in ("airflow_provider_aireiter.operators.aireiter", "airflow_provider_aireiter.sensors.aireiter"):
        loaded = importlib.import_module(module)
        names |= {n for n, c in vars(loaded).items() if inspect.isclass(c) and c.__module__ == module}
    # Building blocks, not operators a DAG uses: the argument table's row and the model operators' base.
    return names - {"ModelArg", "AireiterModelOperator", "AireiterWaitMixin", "AireiterOutputLink"}


def test_the_six_examples_exist() -> None:
    # example_review_before_publish waits for a person: it runs on the real deployment of
    # tests/e2e/test_media_view.py, where the answers are given through the REST API.
    assert [p.stem for p in EXAMPLE_FILES] == [
        "example_image_to_video",
        "example_prompt_batch",
        "example_review_before_publish",
        "example_seedance_text_to_video",
        "example_seedream_daily",
        "example_submit_and_sense",
    ]


def test_every_operator_and_sensor_class_appears_in_an_example() -> None:
    used: set[str] = set()
    for path in EXAMPLE_FILES:
        tree = ast.parse(path.read_text())
        used |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    classes = package_classes()
    assert {"AireiterGenerateOperator", "AireiterTaskSensor", "Veo31Operator"} <= classes
    assert classes - used == set()


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_imports_without_errors_or_warnings(path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr


def run_example(name: str, media: Path) -> tuple[str, dict[str, Any]]:
    """Copy an example into the DAGs folder, run it with dag.test() and return its task results."""
    os.environ["AIREITER_MEDIA_ROOT"] = str(media)
    source = (EXAMPLES / f"{name}.py").read_text()
    dag: Any = load_dag_file(source, name, name)
    run = dag.test()
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=name, run_id=run.run_id, key="return_value").all()
        results = {(r.task_id if r.map_index < 0 else f"{r.task_id}[{r.map_index}]"): r.value for r in rows}
    return str(run.state), {k: _decoded(v) for k, v in results.items()}


def _decoded(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value


FAST = pytest.mark.aireiter_emulator(speed=1, durations={"*": (0.0, 0.0)})
_F = TypeVar("_F", bound=Callable[..., None])


def example_run(test: _F) -> _F:
    """Marks a test that runs an example: on the test DB, with an emulator whose renders take no time."""
    return FAST(pytest.mark.usefixtures("airflow_db")(test))


def succeeded(name: str, media: Path) -> dict[str, Any]:
    """Run an example (:func:`run_example`), which must succeed; its task results."""
    state, results = run_example(name, media)
    assert state == "success"
    return results


@example_run
def test_seedream_daily(aireiter_connection: Emulator, tmp_path: Path) -> None:
    results = succeeded("example_seedream_daily", tmp_path)
    (output,) = results["daily_postcard"]["outputs"]
    assert "/postcards/" in output["path"] and png_size(output["path"]) == (2048, 1152)
    (body,) = submit_bodies(aireiter_connection)
    assert body["params"]["prompt"].endswith("soft pastel colours") and "{{" not in body["params"]["prompt"]


@example_run
def test_seedance_text_to_video(aireiter_connection: Emulator, tmp_path: Path) -> None:
    results = succeeded("example_seedance_text_to_video", tmp_path)
    (output,) = results["kitten_video"]["outputs"]
    assert is_mp4(output["path"]) and output["content_type"] == "video/mp4" and output["size"] > 1000


@example_run
def test_image_to_video_uses_the_image_url_as_first_frame(aireiter_connection: Emulator, tmp_path: Path) -> None:
    results = succeeded("example_image_to_video", tmp_path)
    image_url = results["first_frame"]["outputs"][0]["url"]
    submits = submit_bodies(aireiter_connection)
    assert [b["model"] for b in submits] == ["seedream_v5_lite", "veo3_1_plus"]
    assert submits[1]["params"]["image_url"] == image_url
    assert png_size(results["first_frame"]["outputs"][0]["path"]) == (2048, 1152)
    assert is_mp4(results["animate"]["outputs"][0]["path"])


@example_run
def test_prompt_batch_maps_and_collects(aireiter_connection: Emulator, tmp_path: Path) -> None:
    results = succeeded("example_prompt_batch", tmp_path)
    mapped = [results[f"generate[{i}]"] for i in range(3)]
    assert len({m["out_task_id"] for m in mapped}) == 3
    collected = results["collect"]
    assert len(collected["files"]) == 3 and collected["credits_used"] == 30
    for path in collected["files"]:
        assert png_size(path) == (1024, 1024) or png_size(path)[0] == png_size(path)[1]


@example_run
def test_submit_and_sense(aireiter_connection: Emulator, tmp_path: Path) -> None:
    results = succeeded("example_submit_and_sense", tmp_path)
    assert results["submit"]["status"] == "pending"
    sensed = results["wait_for_video"]
    assert sensed["out_task_id"] == results["submit"]["out_task_id"] and sensed["status"] == "completed"
    assert is_mp4(sensed["outputs"][0]["path"])


@pytest.fixture(autouse=True)
def _clean_dags_folder() -> Any:
    yield
    for path in Path(DAGS_FOLDER).glob("example_*.py"):
        path.unlink()
    shutil.rmtree(Path(DAGS_FOLDER, "__pycache__"), ignore_errors=True)
