"""What production imports: every module outside ``testing`` loads without the emulator."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import airflow_provider_aireiter

PRODUCTION = sorted(
    info.name
    for info in pkgutil.walk_packages(airflow_provider_aireiter.__path__, "airflow_provider_aireiter.")
    if not info.name.startswith("airflow_provider_aireiter.testing")
)


def test_production_modules_never_import_the_testing_package() -> None:
    assert len(PRODUCTION) > 15  # the walk found the provider's modules, not an empty list
    code = (
        "import importlib, sys\n"
        f"for name in {PRODUCTION!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_aireiter.testing')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
