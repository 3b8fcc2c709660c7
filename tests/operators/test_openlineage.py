"""OpenLineage: real task runs with the real OpenLineage provider and client, events read from a file transport.

Each DAG runs with ``dag.test()`` in its own process: the OpenLineage provider reads its configuration
(and registers its listener) once per process, when the plugins are loaded. The emulator runs in the
test's process and is reached over real HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.testing.emulator import Emulator
from airflow_provider_aireiter.testing.emulator.catalog import estimated_credits
from tests.conftest import DAGS_FOLDER
from tests.operators.dagtest_helpers import dag_source

pytestmark = pytest.mark.usefixtures("airflow_db")

pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider (the test extra) is needed")

REFERENCE = "https://images.example.com/refs/first.png"
END_FRAME = "https://user:pw@images.example.com:8443/refs/last.png?X-Signature=secret#frag"

#: runs one DAG file in a fresh process; argv: the DAG file, the DAG id; with BLOCK_OPENLINEAGE set,
#: every import of the OpenLineage provider or client fails, and the modules loaded are checked after
RUNNER = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, os, sys

    BLOCKED = ("openlineage", "airflow.providers.openlineage")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{name} is blocked by the test")
            return None

    if os.environ.get("BLOCK_OPENLINEAGE"):  # as if not installed: no import, no distribution found
        sys.meta_path.insert(0, Block())
        import importlib.metadata, importlib_metadata

        def hiding(everything):
            def distributions(**kwargs):
                for dist in everything(**kwargs):
                    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
                    if not name.startswith(("openlineage-", "apache-airflow-providers-openlineage")):
                        yield dist
            return distributions

        for metadata in (importlib.metadata, importlib_metadata):
            metadata.distributions = hiding(metadata.distributions)

    path, dag_id = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("lineage_dag_" + dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    imported_by_dag_file = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    run = getattr(module, "dag").test()
    loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    print("RESULT " + json.dumps({"state": str(run.state), "after_parse": imported_by_dag_file, "loaded": loaded}))
    """
)


def run_in_process(
    dag_id: str, body: str, tmp_path: Path, *, lineage: bool = True, block: bool = False
) -> dict[str, Any]:
    """Write the DAG, ``dag.test()`` it in a new process; return its state, what it imported and the events."""
    os.makedirs(DAGS_FOLDER, exist_ok=True)
    dag_file = Path(DAGS_FOLDER) / f"{dag_id}.py"
    dag_file.write_text(dag_source(dag_id, body, imports="from airflow.sdk import task"))
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    events_file = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__OPENLINEAGE__", "OPENLINEAGE_"))}
    env["RESULTS_DIR"] = str(tmp_path / "results")
    os.makedirs(env["RESULTS_DIR"], exist_ok=True)
    if lineage:
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        )
        env["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "aireiter-tests"
    if block:
        env["BLOCK_OPENLINEAGE"] = "1"
    done = subprocess.run(
        [sys.executable, str(runner), str(dag_file), dag_id],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=str(Path(__file__).parents[2]),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout[-4000:], done.stderr[-4000:])
    outcome: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    outcome["log"] = done.stdout + done.stderr
    raw = events_file.read_text().splitlines() if events_file.exists() else []
    outcome["events"] = [json.loads(line) for line in raw if line.strip()]
    return outcome


def task_event(events: list[dict[str, Any]], task_id: str, event_type: str) -> dict[str, Any]:
    """The one event of ``event_type`` (COMPLETE, FAIL) for the task ``task_id``."""
    found = [e for e in events if e["eventType"] == event_type and e["job"]["name"].endswith(f".{task_id}")]
    assert len(found) == 1, [(e["eventType"], e["job"]["name"]) for e in events]
    return found[0]


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[side]]


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_complete_event_reports_images_stored_files_and_the_remote_task(
    aireiter_connection: Emulator, tmp_path: Path, deferrable: bool
) -> None:
    media, fetched = tmp_path / "media", tmp_path / "fetched"
    body = f"""
    common = dict(deferrable={deferrable}, poll_interval=0.2)
    veo = Veo31Operator(task_id="veo", prompt="move", image_url={REFERENCE!r}, end_image_url={END_FRAME!r},
                        channel="plus", output_path="file://{media}/", **common)
    image = SeedreamV5LiteOperator(task_id="image", prompt="a fox", **common)
    AireiterGenerateOperator(task_id="submit_only", model="nano_banana_pro", wait_for_completion=False,
                             model_params={{"prompt": "x", "image_input": ["{REFERENCE}", "data:image/png;base64,AA"]}})

    @task
    def fetch(result):  # the hook alone: what Airflow's hook-level lineage reports
        from airflow.sdk import ObjectStoragePath
        from airflow_provider_aireiter.hooks.aireiter import AireiterHook, output_record, write_output_record

        directory = ObjectStoragePath("file://{fetched}/")
        got = AireiterHook().download(result["outputs"][0]["url"], directory, "fetched")
        write_output_record(directory, got, output_record("d", "r", "fetch", -1, 0, got.size))  # as finish does

    fetch(image.output)
    """
    dag_id = f"lineage_{'deferred' if deferrable else 'sync'}"
    outcome = run_in_process(dag_id, body, tmp_path)
    assert outcome["state"] == "success", outcome["log"][-3000:]
    if deferrable:
        assert "[DAG TEST] running trigger in line" in outcome["log"]
    events = outcome["events"]

    veo = task_event(events, "veo", "COMPLETE")
    (stored,) = [p for p in media.iterdir() if not p.name.startswith(".")]
    assert stored.name.startswith(f"af-{dag_id}") and stored.suffix == ".mp4"
    # the reference images by URL: no user info, query (a signature) or fragment
    assert datasets(veo, "inputs") == [
        ("https://images.example.com", "/refs/first.png"),
        ("https://images.example.com:8443", "/refs/last.png"),
    ]
    # the final stored file, never the download's temporary .part file nor the media view's record
    assert datasets(veo, "outputs") == [("file", str(stored))]
    facets = veo["run"]["facets"]
    out_task_id = stored.name.removesuffix("_0.mp4")
    assert facets["externalQuery"]["externalQueryId"] == out_task_id
    assert facets["externalQuery"]["source"] == "aireiter"
    remote = aireiter_connection.task(out_task_id)
    assert remote is not None and remote["credits_used"] > 0
    aireiter = facets["aireiter"]
    assert aireiter["model"] == "veo3_1_plus"
    assert aireiter["status"] == "completed"
    assert aireiter["creditsUsed"] == remote["credits_used"]
    assert aireiter["estimatedCredits"] == estimated_credits("veo3_1_plus")  # the submit's estimate

    # no output_path: the service's URLs are the outputs; no reference image: no inputs
    image = task_event(events, "image", "COMPLETE")
    assert image["inputs"] == []
    (output,) = datasets(image, "outputs")
    assert output[0] == aireiter_connection.base_url.rstrip("/")
    assert output[1].startswith("/") and output[1].endswith(".png")
    assert image["run"]["facets"]["aireiter"]["model"] == "seedream_v5_lite"
    assert image["run"]["facets"]["externalQuery"]["externalQueryId"].startswith(f"af-{dag_id}")

    # wait_for_completion=False: the submitted task, no output yet; the generic operator's image params
    submit_only = task_event(events, "submit_only", "COMPLETE")
    assert datasets(submit_only, "inputs") == [("https://images.example.com", "/refs/first.png")]
    assert submit_only["outputs"] == []
    submitted_id = submit_only["run"]["facets"]["externalQuery"]["externalQueryId"]
    assert submitted_id.startswith(f"af-{dag_id}-submit_only")
    assert submit_only["run"]["facets"]["aireiter"]["status"] == "pending"
    assert submit_only["run"]["facets"]["aireiter"]["model"] == "nano_banana_pro"

    # the hook used alone: Airflow's hook-level lineage reports the final file (not the .part, not the record)
    assert (fetched / ".fetched.png.aireiter.json").exists()
    fetch = task_event(events, "fetch", "COMPLETE")
    # (dag.test() runs every task in one process, whose collector keeps what earlier tasks stored: the
    # veo file may be there too; a deployment runs each task in its own process)
    assert ("file", str(fetched / "fetched.png")) in datasets(fetch, "outputs")
    assert set(datasets(fetch, "outputs")) <= {("file", str(fetched / "fetched.png")), ("file", str(stored))}

    everything = json.dumps(events)
    assert ".part" not in everything and ".aireiter.json" not in everything
    assert aireiter_connection.api_key not in everything
    assert "X-Signature" not in everything and "user:pw" not in everything


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferred"])
def test_fail_event_reports_what_was_known(aireiter_connection: Emulator, tmp_path: Path, deferrable: bool) -> None:
    aireiter_connection.faults.script("submit", [{"kind": "task_failure", "message": "content rejected by review"}])
    body = f"""
    Seedance15ProOperator(task_id="video", prompt="a kitten", video_length=5, deferrable={deferrable},
                          poll_interval=0.2, output_path="file://{tmp_path}/media/",
                          extra_params={{"image_url": {REFERENCE!r}}})
    """
    dag_id = f"lineage_fail_{'deferred' if deferrable else 'sync'}"
    outcome = run_in_process(dag_id, body, tmp_path)
    assert outcome["state"] == "failed"
    fail = task_event(outcome["events"], "video", "FAIL")
    assert datasets(fail, "inputs") == [("https://images.example.com", "/refs/first.png")]
    assert fail["outputs"] == []
    facets = fail["run"]["facets"]
    out_task_id = facets["externalQuery"]["externalQueryId"]
    assert out_task_id.startswith(f"af-{dag_id}") and facets["externalQuery"]["source"] == "aireiter"
    assert (aireiter_connection.task(out_task_id) or {}).get("status") == "failed"
    assert facets["aireiter"]["model"] == "seedance_1_5_pro"
    assert facets["aireiter"]["status"] == "failed"
    assert "creditsUsed" not in facets["aireiter"]  # unknown: a failed task reports none
    assert facets["aireiter"]["estimatedCredits"] == estimated_credits("seedance_1_5_pro")
    assert "content rejected by review" in facets["errorMessage"]["message"]


def test_without_the_openlineage_provider_nothing_is_imported(aireiter_connection: Emulator, tmp_path: Path) -> None:
    """With every OpenLineage import blocked, a DAG run succeeds and loads none of it."""
    body = f"""
    Veo31Operator(task_id="veo", prompt="move", image_url={REFERENCE!r}, poll_interval=0.2,
                  output_path="file://{tmp_path}/media/")
    """
    outcome = run_in_process("lineage_blocked", body, tmp_path, lineage=False, block=True)
    assert outcome["state"] == "success", outcome["log"][-3000:]
    assert outcome["loaded"] == []
    assert outcome["events"] == []


def test_importing_the_operators_imports_no_openlineage() -> None:
    """With the provider installed and configured, importing the provider's modules loads none of it.

    Airflow itself (its configuration, reading each installed provider's info) loads the OpenLineage
    provider's ``get_provider_info``: what matters is that this package adds nothing to it.
    """
    code = (
        "import sys\n"
        "def loaded(): return sorted(m for m in sys.modules if m.startswith(('openlineage', 'airflow.providers.openlineage')))\n"
        "import airflow.sdk\n"
        "before = loaded()\n"
        "import airflow_provider_aireiter.operators.aireiter, airflow_provider_aireiter.sensors.aireiter\n"
        "import airflow_provider_aireiter.hooks.aireiter\n"
        "print(before, loaded())\n"
    )
    env = {**os.environ, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "console"})}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = done.stdout.strip().splitlines()[-1].split("] [")
    assert after.rstrip("]") == before.lstrip("[")
    assert "'openlineage" not in after  # the client: never
