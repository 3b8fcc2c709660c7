"""``make ui`` (``scripts/ui.py``) as a newcomer runs it: the demo runs, its image shows in the media view, Ctrl-C stops all."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.e2e.deployment import clean_environ, direct_session, processes_with_env

ROOT = Path(__file__).resolve().parents[2]
UI_HOME = str(ROOT / ".ui" / "airflow")


def _processes_of_ui() -> list[int]:
    """Live processes whose environment names the ``make ui`` AIRFLOW_HOME."""
    return processes_with_env("AIRFLOW_HOME", UI_HOME)


def test_make_ui_runs_the_demo_shows_its_media_and_stops_on_ctrl_c() -> None:
    ui = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "ui.py")],
        cwd=ROOT,
        env=clean_environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert ui.stdout is not None
        for line in ui.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(600), "".join(lines)[-3000:]
        text = "".join(lines)
        assert "The demo run finished: success." in text, text[-3000:]
        base = re.search(r"Airflow UI:\s+(\S+)", text)
        run = re.search(r"Running example_image_to_video once \(([^)]+)\)", text)
        assert base and run, text
        session = direct_session()
        login = session.post(f"{base.group(1)}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
        assert login.status_code in (200, 201), login.text
        page = session.get(
            f"{base.group(1)}/aireiter-media/ti",
            params={"dag_id": "example_image_to_video", "run_id": run.group(1), "task_id": "first_frame"},
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
            timeout=60,
        )
        assert page.status_code == 200 and "<img" in page.text, page.text[:2000]
    finally:
        ui.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            ui.wait(timeout=120)
        finally:
            if ui.poll() is None:
                ui.kill()
    reader.join(10)
    assert ui.returncode == 0, "".join(lines)[-3000:]
    assert "everything make ui started has exited" in "".join(lines)
    give_up = time.monotonic() + 30
    while _processes_of_ui() and time.monotonic() < give_up:
        time.sleep(0.5)
    assert _processes_of_ui() == []
