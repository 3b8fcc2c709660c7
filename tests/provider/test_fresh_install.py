"""`pip install .` into a fresh virtualenv: the real `airflow` CLI lists the provider and its connection type."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import airflow

ROOT = Path(__file__).resolve().parents[2]


def test_non_editable_install_registers_the_provider(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    requirements = [str(ROOT), f"apache-airflow=={airflow.__version__}"]
    if uv:  # the test command installs uv; it reuses its cache
        command = [uv, "pip", "install", "-q", "--python", str(python), *requirements]
    else:
        command = [str(python), "-m", "pip", "install", "-q", *requirements]
    subprocess.run(command, check=True, timeout=1200, capture_output=True)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.pop("PYTHONPATH", None)
    cli = venv / "bin" / "airflow"
    providers = subprocess.run(
        [str(cli), "providers", "list"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert "airflow-provider-aireiter" in providers.stdout, providers.stderr[-2000:]
    hooks = subprocess.run(
        [str(cli), "providers", "hooks"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert any(line.startswith("aireiter ") and "AireiterHook" in line for line in hooks.stdout.splitlines())
    packaged = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.resources as r, airflow_provider_aireiter as p; "
            "print(p.__file__); "
            "print(r.files('airflow_provider_aireiter.testing.emulator').joinpath('media/sample.mp4').is_file(), "
            "r.files('airflow_provider_aireiter').joinpath('py.typed').is_file())",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    location, files = packaged.stdout.strip().splitlines()
    assert str(venv) in location  # the installed copy, not the checkout
    assert files == "True True"
