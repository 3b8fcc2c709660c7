"""`pip install .` into a fresh virtualenv next to an installed Airflow: nothing already installed changes, and
the real `airflow` CLI lists the provider and its connection type.

Runs on the Airflow of the test run (each version ``make test`` covers); Airflow is installed first with the
repository's pins for that version (``constraints/airflow-<major.minor>.txt``) when there are some, as a user
of that version would have it.
"""

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
    # the test command installs uv; it reuses its cache
    pip = [uv, "pip"] if uv else [str(python), "-m", "pip"]
    where = ["--python", str(python)] if uv else []

    def installed() -> set[str]:
        done = subprocess.run([*pip, "freeze", *where], check=True, timeout=300, capture_output=True, text=True)
        return {line.strip().lower() for line in done.stdout.splitlines() if line.strip()}

    airflow_line = ".".join(airflow.__version__.split(".")[:2])
    pins = ROOT / "constraints" / f"airflow-{airflow_line}.txt"
    constraints = ["-c", str(pins)] if pins.is_file() else []
    airflow_req = f"apache-airflow=={airflow.__version__}"
    subprocess.run(
        [*pip, "install", "-q", *where, *constraints, airflow_req], check=True, timeout=1200, capture_output=True
    )
    before = installed()
    subprocess.run([*pip, "install", "-q", *where, str(ROOT)], check=True, timeout=1200, capture_output=True)
    after = installed()
    assert before - after == set(), (
        f"installing the provider changed: {sorted(before - after)} -> {sorted(after - before)}"
    )
    # only additions: the provider and what it needs that Airflow does not (aiohttp and its dependencies)
    assert "airflow-provider-aireiter" in {line.split("==")[0].split(" @ ")[0] for line in after - before}
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
