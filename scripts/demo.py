"""``make demo``: run the flagship example DAG end to end in Airflow and show what it generated.

Without ``AIRFLOW_CONN_AIREITER_DEFAULT`` in the environment, a bundled emulator of AIReiter is
started on 127.0.0.1 (no credits spent). With it set, the DAG runs against that connection: the real
service, which spends credits. Airflow runs with its own home in ``.demo/airflow`` (SQLite).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
DAG_ID = "example_image_to_video"


def describe(path: str) -> str:
    local = Path(path.removeprefix("file://"))
    data = local.read_bytes()[:32]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        kind = f"PNG image {width}x{height}"
    elif data[4:8] == b"ftyp":
        kind = "MP4 video"
    else:
        kind = "file"
    return f"{kind}, {local.stat().st_size:,} bytes: {local}"


def main() -> int:
    os.environ["AIRFLOW_HOME"] = str(DEMO / "airflow")
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIREITER_MEDIA_ROOT", str(DEMO / "media"))
    with ExitStack() as stack:
        if os.environ.get("AIRFLOW_CONN_AIREITER_DEFAULT"):
            print("Using the AIReiter connection from AIRFLOW_CONN_AIREITER_DEFAULT (real credits are spent).")
        else:
            from airflow_provider_aireiter.testing.emulator import Emulator

            # speed 20: a 95 s video takes about 5 s
            emulator = stack.enter_context(Emulator(speed=20.0, port=0))
            os.environ["AIRFLOW_CONN_AIREITER_DEFAULT"] = emulator.conn_json
            print(f"Started the AIReiter emulator at {emulator.base_url} (speed 20x, no credits spent).")
        print("Preparing Airflow's metadata database in .demo/airflow ...")
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        print(f"Running the DAG {DAG_ID!r} with dag.test() ...")
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        sys.path.insert(0, str(ROOT / "example_dags"))
        module = __import__(DAG_ID)
        run = module.dag.test()
        print(f"\nDAG run {run.run_id}: {run.state}")
        with create_session() as session:
            rows = session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=run.run_id, key="return_value").all()
            results = {row.task_id: row.value for row in rows}
        for task_id in ("first_frame", "animate"):
            result = results.get(task_id)
            if result is None:
                print(f"  {task_id}: no result")
                continue
            result = json.loads(result) if isinstance(result, str) else result
            print(f"  {task_id}: {result['model']} {result['status']}, {result['credits_used']} credits")
            for output in result["outputs"]:
                print(f"    {describe(output['path'])}" if output.get("path") else f"    {output['url']}")
        return 0 if str(run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
