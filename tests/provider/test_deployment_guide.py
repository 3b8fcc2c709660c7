"""The deployment guide and docs/Dockerfile: what they tell an Airflow operator to run, run here.

The guide is the "Deploying" part of the docs page docs/deferral-and-callbacks.md.

The Dockerfile's ``pip install`` line is resolved, without Docker, into an empty virtualenv, with this
checkout's wheel standing in for the released one: it must resolve to exactly the image's Airflow and
the provider with its ``ui`` extra. (The image itself is not built: it comes from Docker Hub, which the
test machines do not reach.)
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docs" / "Dockerfile"
GUIDE = ROOT / "docs" / "deferral-and-callbacks.md"


def _pip_line() -> tuple[str, list[str]]:
    text = DOCKERFILE.read_text()
    (image,) = re.findall(r"^FROM apache/airflow:(\S+)$", text, re.MULTILINE)
    (run,) = re.findall(r"^RUN (pip install .+)$", text, re.MULTILINE)
    return image, shlex.split(run)


def test_the_dockerfile_pins_airflow_to_its_image_and_the_provider_to_this_release() -> None:
    from airflow_provider_aireiter import __version__

    image, argv = _pip_line()
    assert f"apache-airflow=={image}" in argv
    assert f"airflow-provider-aireiter[ui]=={__version__}" in argv
    guide = GUIDE.read_text()
    for line in DOCKERFILE.read_text().splitlines():  # the guide shows the very lines that are tested
        if line.startswith(("FROM ", "RUN ")):
            assert line in guide, line


def test_the_dockerfiles_pip_line_resolves_beside_the_images_airflow(tmp_path: Path) -> None:
    image, argv = _pip_line()
    # uv sits in the main virtualenv (make venv installs it); the older lines' virtualenvs are made by it.
    candidates = [Path(sys.executable).with_name("uv"), ROOT / ".venv" / "bin" / "uv", shutil.which("uv")]
    uv = next((Path(c) for c in candidates if c and Path(c).exists()), None)
    if uv is None:
        pytest.fail("no uv found: make venv installs it into .venv")
    wheels = tmp_path / "dist"
    subprocess.run([str(uv), "build", "--wheel", "-q", "--out-dir", str(wheels), str(ROOT)], check=True, timeout=600)
    (wheel,) = wheels.glob("airflow_provider_aireiter-*.whl")
    venv = tmp_path / "image-python"
    subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    specs = [a for a in argv[2:] if not a.startswith("-")]
    specs = [f"{wheel}[ui]" if s.startswith("airflow-provider-aireiter") else s for s in specs]
    done = subprocess.run(
        [str(uv), "pip", "install", "--dry-run", "--python", str(venv / "bin" / "python"), *specs],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plan = done.stderr + done.stdout
    assert f" + apache-airflow=={image}\n" in plan
    from airflow_provider_aireiter import __version__

    assert f" + airflow-provider-aireiter @ file://{wheel}\n" in plan, plan[-2000:]
    assert wheel.name.startswith(f"airflow_provider_aireiter-{__version__}-")
    assert " + pillow==" in plan  # the ui extra
