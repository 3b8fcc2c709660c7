"""``make ui``: Airflow's UI on 127.0.0.1 with the emulator, the example DAGs and the media view.

Starts the AIReiter emulator and Airflow's api-server, scheduler, dag-processor and triggerer on an
embedded SQLite database in ``.ui/``, runs the demo DAG once, then prints the URL and the login and
waits. Ctrl-C stops everything it started. No credits are spent (the emulator stands in for AIReiter).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".ui"
DEMO_DAG = "example_image_to_video"
USER, PASSWORD = "admin", "admin"
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--workers", "1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"make ui: gave up waiting for {what} after {timeout:.0f}s; logs are in {HOME}/logs")
        time.sleep(1.0)


def environment(port: int, conn_json: str) -> dict[str, str]:
    airflow_home = HOME / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    passwords = airflow_home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    secret_file = airflow_home / "secrets.json"
    if not secret_file.exists():  # kept across runs so a browser's session survives a restart
        secret_file.write_text(json.dumps({"api": secrets.token_hex(32), "jwt": secrets.token_hex(32)}))
    keys = json.loads(secret_file.read_text())
    base = f"http://127.0.0.1:{port}"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__SECRET_KEY": keys["api"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_CONN_AIREITER_DEFAULT": conn_json,
        "AIREITER_MEDIA_ROOT": str(HOME / "media"),
        "AIRFLOW__AIREITER__MEDIA_ROOTS": f"file://{HOME / 'media'}",  # what the media view may serve
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    from airflow_provider_aireiter.testing.emulator import Emulator

    # Ctrl-C, and SIGTERM too; set explicitly, as a shell that starts this in the background ignores SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    logs = HOME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("AIREITER_UI_PORT") or free_port())
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        emulator = stack.enter_context(Emulator(speed=20.0, port=0))  # speed 20: a 95 s video takes about 5 s
        env = environment(port, emulator.conn_json)
        print(f"Started the AIReiter emulator at {emulator.base_url} (no credits spent).")
        print("Preparing Airflow's SQLite metadata database in .ui/airflow ...")
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)

        def stop_all() -> None:
            for proc in processes:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in processes:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

        stack.callback(stop_all)
        for name, args in COMPONENTS.items():
            log = stack.enter_context(open(logs / f"{name}.log", "ab"))
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args], env=env, stdout=log, stderr=log, start_new_session=True
                )
            )
        base = env["AIRFLOW__API__BASE_URL"]
        session = requests.Session()
        session.trust_env = False
        wait_for("the api-server", lambda: session.get(f"{base}/api/v2/monitor/health", timeout=5).ok, 180)
        token = session.post(f"{base}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=30)
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        wait_for(f"the DAG {DEMO_DAG}", lambda: session.get(f"{base}/api/v2/dags/{DEMO_DAG}", timeout=5).ok, 180)
        session.patch(f"{base}/api/v2/dags/{DEMO_DAG}", json={"is_paused": False}, timeout=30).raise_for_status()
        run = session.post(f"{base}/api/v2/dags/{DEMO_DAG}/dagRuns", json={"logical_date": None}, timeout=30)
        run.raise_for_status()
        run_id = run.json()["dag_run_id"]
        print(f"Running {DEMO_DAG} once ({run_id}) ...")

        def finished() -> str | None:
            state = session.get(f"{base}/api/v2/dags/{DEMO_DAG}/dagRuns/{run_id}", timeout=10).json()["state"]
            return state if state in ("success", "failed") else None

        state = wait_for("the demo run", finished, 300)
        from urllib.parse import quote

        run_url = f"{base}/dags/{DEMO_DAG}/runs/{quote(run_id, safe='')}"
        print(f"\nThe demo run finished: {state}.")
        print(f"\n  Airflow UI:   {base}   (login: {USER} / {PASSWORD})")
        print(f"  Image:        {run_url}/tasks/first_frame/plugin/aireiter-media")
        print(f"  Video:        {run_url}/tasks/animate/plugin/aireiter-media")
        print(f"  Gallery:      {run_url}/plugin/aireiter-run-gallery")
        print("  Review:       trigger example_review_before_publish, then open its Required Actions")
        print(f"\nLogs in {logs}. Press Ctrl-C to stop everything.")
        try:
            while all(proc.poll() is None for proc in processes):
                time.sleep(1.0)
            died = [name for name, proc in zip(COMPONENTS, processes, strict=True) if proc.poll() is not None]
            print(f"make ui: {', '.join(died)} stopped; see {logs}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nStopping ...", flush=True)
    print("Stopped: everything make ui started has exited.")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # during start-up: the ExitStack has stopped what was started
        print("\nStopped: everything make ui started has exited.")
        raise SystemExit(130) from None
