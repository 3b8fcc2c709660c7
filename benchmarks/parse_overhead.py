"""How much slower does a DAG file parse when it uses the AIReiter operators?

Two DAG files with the same shape (four tasks, the same dependencies): one with the provider's
operators and sensor, one with bare ``BaseOperator`` tasks. Each is parsed in fresh processes,
alternating, and two figures are printed:

* whole process: ``python`` starting, importing Airflow and running the DAG file (what
  ``python my_dag.py`` or a cold parse costs);
* file only: the time to run the DAG file in a process that has already imported ``airflow.sdk``
  (what Airflow's DAG processor pays per parse, as its parse processes start with Airflow loaded).

Run: ``.venv/bin/python benchmarks/parse_overhead.py [--rounds 15]``. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

AIREITER_DAG = textwrap.dedent(
    """
    from datetime import datetime
    from airflow.sdk import DAG
    from airflow_provider_aireiter.operators.aireiter import (
        AireiterGenerateOperator, Seedance15ProOperator, SeedreamV5LiteOperator, Veo31Operator,
    )
    from airflow_provider_aireiter.sensors.aireiter import AireiterTaskSensor

    with DAG("parse_bench", schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False):
        image = SeedreamV5LiteOperator(task_id="image", prompt="a fox {{ ds }}", aspect_ratio="16:9")
        video = Seedance15ProOperator(task_id="video", prompt="a fox", video_length=5, resolution="720p")
        veo = Veo31Operator(task_id="veo", prompt="move", image_url="https://example.com/a.png", channel="plus")
        other = AireiterGenerateOperator(task_id="other", model="nano_banana_pro", model_params={"prompt": "x"})
        sense = AireiterTaskSensor(task_id="sense", out_task_id="abc")
        image >> [video, veo] >> other >> sense
    """
)

BASE_DAG = textwrap.dedent(
    """
    from datetime import datetime
    from airflow.sdk import DAG, BaseOperator

    class Task(BaseOperator):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    with DAG("parse_bench", schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False):
        image = Task(task_id="image")
        video = Task(task_id="video")
        veo = Task(task_id="veo")
        other = Task(task_id="other")
        sense = Task(task_id="sense")
        image >> [video, veo] >> other >> sense
    """
)

FILE_ONLY = (
    "import runpy, sys, time\n"
    "import airflow.sdk\n"
    "from airflow.sdk import DAG, BaseOperator\n"
    "started = time.perf_counter()\n"
    "runpy.run_path(sys.argv[1])\n"
    "print(time.perf_counter() - started)\n"
)


#: the children may write .pyc files, as an installed package has them (pip compiles at install): a shell
#: that sets PYTHONDONTWRITEBYTECODE would otherwise make every parse compile the provider's source
CHILD_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def whole_process(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(path)], check=True, capture_output=True, env=CHILD_ENV)
    return time.perf_counter() - started


def file_only(path: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", FILE_ONLY, str(path)], check=True, capture_output=True, text=True, env=CHILD_ENV
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="fresh processes per DAG and measure (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours, base = Path(tmp, "dag_aireiter.py"), Path(tmp, "dag_base.py")
        ours.write_text(AIREITER_DAG)
        base.write_text(BASE_DAG)
        whole_process(ours), whole_process(base)  # warm the OS file cache and .pyc files
        results: dict[str, dict[str, list[float]]] = {
            "whole process": {"ours": [], "base": []},
            "file only": {"ours": [], "base": []},
        }
        for _ in range(args.rounds):
            for name, path in (("ours", ours), ("base", base)):
                results["whole process"][name].append(whole_process(path))
                results["file only"][name].append(file_only(path))
    print(f"DAG parse time, median of {args.rounds} fresh processes each")
    print(f"{'measure':<15}{'AIReiter ops':>14}{'BaseOperator':>14}{'ratio':>8}{'extra':>10}")
    for measure, runs in results.items():
        ours_s, base_s = statistics.median(runs["ours"]), statistics.median(runs["base"])
        print(
            f"{measure:<15}{ours_s * 1000:>11.1f} ms{base_s * 1000:>11.1f} ms{ours_s / base_s:>8.3f}"
            f"{(ours_s - base_s) * 1000:>7.1f} ms"
        )


if __name__ == "__main__":
    main()
