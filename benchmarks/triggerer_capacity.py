"""How many AIReiter waits can one triggerer hold, and what does each cost?

For each size N (default 100, 1,000 and 5,000) and each trigger kind, a fresh Python process
starts an asyncio loop, notes its resident memory, creates N triggers and runs all their ``run()``
generators concurrently until each has yielded its event, as Airflow's triggerer does. The tasks
it waits for live in the bundled emulator, which runs in *this* process (so its CPU and memory are
not counted against the triggers); the emulator marks each task completed at a chosen time, and
the benchmark reports:

* peak RSS above the process's baseline (taken after the imports, before the triggers exist);
* CPU seconds per poll, over the whole wait and over a steady window between the first poll and
  the first completion;
* polls per task (counted in the trigger process and, as a cross-check, by the server);
* the delay between a task completing on the server and its trigger's event;
* CPU as a share of one core.

Kinds compared:

* ``AireiterTaskTrigger`` against the emulator's ``POST /api/openapi/query``;
* a bare poll loop on one shared aiohttp ``ClientSession`` (what the library itself costs: each
  loop sleeps its interval give or take a tenth, like the provider's trigger, but no Airflow trigger,
  retries, envelope parsing or logging);
* the http provider's ``HttpSensorTrigger`` (the peer). It fires as soon as a request does not
  end in an error, and keeps polling only on HTTP 404, so against the real query endpoint (HTTP
  200 for a running task) it would fire on its first poll (the benchmark checks this once). It is
  therefore pointed at a small gate served next to the emulator: the same path, body and Bearer
  key, answered by the emulator's own query code, but with HTTP 404 until the task has finished.

Each (kind, N) runs ``--rounds`` times (default 3), the rounds interleaved with the kinds' order
rotated, so the runs compared in one round share the machine's load of those minutes. A figure is
the median over the rounds; a ratio is the median of the per-round ratios, and the CPU-per-poll rows
list every round's ratio. At N = 100 a whole wait costs about 0.15 s of CPU and one burst of polls
varies by up to a factor of two from run to run, so a single run cannot tell 0.38x from 0.43x.

Run: ``.venv/bin/python benchmarks/triggerer_capacity.py [--sizes 100,1000,5000] [--rounds 3]
[--poll-interval 10] [--finish-after 25] [--spread SECONDS] [--stagger SECONDS] [--keep DIR]``
(needs the ``bench`` extra: ``apache-airflow-providers-http``). With ``AIREITER_BENCH_PROFILE=<file>``
in the environment, each AIReiter child writes a cProfile of its run to that file. The defaults take about 21 minutes
on two cores (``--rounds 1``: about eight). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hmac
import importlib
import json
import math
import os
import platform
import random
import resource
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from itertools import pairwise
from pathlib import Path
from typing import Any

AIREITER = "aireiter"
PEER = "http_sensor"
#: The fair floor for keep-alive polling: a bare poll loop on one shared aiohttp session.
FLOOR = "aiohttp_floor"
#: One-off check: the peer pointed at the emulator's real query endpoint.
PEER_DIRECT = "http_sensor_direct"
LABELS = {
    AIREITER: "AIReiter",
    PEER: "HttpSensorTrigger",
    PEER_DIRECT: "HttpSensorTrigger (direct)",
    FLOOR: "aiohttp loop",
}
QUERY_PATH = "/api/openapi/query"
SUBMIT_PATH = "/api/openapi/submit"
HTTP_CONN_ID = "bench_http"
MODEL = "seedream_v5_lite"
MIB = 1024 * 1024
#: Tasks stay "processing" until the benchmark completes them (emulator seconds).
NEVER = 10_000_000.0
TARGET_MB = 50.0
TARGET_CPU_PCT = 5.0
TARGET_N = 1000
TARGET_POLL = 10.0
#: CPU per poll at most this share of the peer's
TARGET_PEER_RATIO = 0.5
#: modules a running triggerer has imported before a new trigger starts (see child_main)
TRIGGERER_LOADED = (
    "airflow.jobs.triggerer_job_runner",
    "airflow.sdk.definitions.connection",
    "airflow.sdk.execution_time.cache",
    "asgiref.sync",
)


# ======================================================================== trigger process


def _proc_status() -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (bytes) and ``Threads`` of this process, from ``/proc/self/status``."""
    wanted = {"VmRSS": 1024, "VmHWM": 1024, "Threads": 1}
    found: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in wanted:
                found[name] = int(rest.split()[0]) * wanted[name]
    return found


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5); whether the kernel allowed it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    now = _proc_status()
    return now["VmHWM"] <= now["VmRSS"] + 256 * 1024


def _count_collections() -> dict[str, float]:
    """Count the garbage collector's runs from now on: all of them, the full ones, and their CPU seconds.

    A full collection walks every object of the process (Airflow's imports leave about 170,000), so
    one costs tens of milliseconds; at N = 100 one of them is a visible share of the whole wait.
    """
    seen = {"collections": 0, "full": 0, "cpu": 0.0, "full_cpu": 0.0}
    began = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.process_time()
            return
        spent = time.process_time() - began[0]
        seen["collections"] += 1
        seen["cpu"] += spent
        if info["generation"] == 2:
            seen["full"] += 1
            seen["full_cpu"] += spent

    gc.callbacks.append(callback)
    return seen


def _count_calls(owner: type, name: str, counter: list[int]) -> None:
    """Wrap the coroutine method ``owner.name`` so each call adds one to ``counter[0]``."""
    original = getattr(owner, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await original(*args, **kwargs)

    setattr(owner, name, counted)


@dataclass
class _FloorEvent:
    payload: Any


def _floor_factory(poll: float, deadline: float, polls: list[int]) -> Callable[[str], Any]:
    """Bare polls of the query endpoint on one shared aiohttp session, shaped like triggers."""
    import aiohttp

    conn = json.loads(os.environ["AIRFLOW_CONN_AIREITER_DEFAULT"])
    url = conn["host"].rstrip("/") + QUERY_PATH
    headers = {"Authorization": f"Bearer {conn['password']}", "Content-Type": "application/json"}
    shared: dict[str, Any] = {}
    slots = asyncio.Semaphore(32)

    class FloorPoll:
        def __init__(self, out_id: str) -> None:
            self.out_id = out_id

        async def run(self) -> Any:
            if "session" not in shared:
                shared["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
            session = shared["session"]
            body = json.dumps({"out_task_id": self.out_id}).encode()
            while time.time() < deadline:
                polls[0] += 1
                async with slots, session.post(url, data=body, headers=headers) as response:
                    data = await response.json(content_type=None)
                status = ((data or {}).get("data") or {}).get("status")
                if status in ("completed", "failed"):
                    yield _FloorEvent({"status": "success" if status == "completed" else "failed"})
                    return
                # Aligned like the provider's polls: the next multiple of the interval on the loop's
                # clock at least half an interval away, so every loop of one interval wakes together.
                await asyncio.sleep(poll * random.uniform(0.9, 1.1))  # as the provider's trigger sleeps
            yield _FloorEvent({"status": "timeout"})

    return FloorPoll


def _trigger_factory(kind: str, poll: float, deadline: float, polls: list[int]) -> Callable[[str], Any]:
    """Import what ``kind`` needs (before the baseline), count its polls, return a trigger maker."""
    if kind == AIREITER:
        from airflow_provider_aireiter import retry  # noqa: F401  (imported by the trigger on its first run)
        from airflow_provider_aireiter.hooks import transport as async_transport  # (by the hook on its first poll)

        # Like aiohttp's own default context (built when aiohttp is imported, so before every kind's
        # baseline): the provider's TLS context is built once per process, about 20 ms, by the first
        # trigger a triggerer ever runs. A one-off of the process, not of a wait.
        async_transport.default_ssl_context()
        # The provider imports aiohttp on its first request, not at import (DAG parsing never needs
        # it): also a one-off of the process, which the peer pays before its baseline (its hook imports
        # aiohttp at module level), so here too.
        import aiohttp

        from airflow_provider_aireiter.hooks.aireiter import AireiterHook
        from airflow_provider_aireiter.triggers.aireiter import AireiterTaskTrigger

        _count_calls(AireiterHook, "afind_task", polls)
        return lambda out_id: AireiterTaskTrigger(out_task_id=out_id, deadline=deadline, poll_interval=poll)

    if kind == FLOOR:
        return _floor_factory(poll, deadline, polls)

    import aiohttp  # noqa: F401
    import tenacity  # noqa: F401  (imported by the hook on each request)
    from airflow.providers.http.hooks.http import HttpAsyncHook
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    _count_calls(HttpAsyncHook, "run", polls)
    return lambda out_id: HttpSensorTrigger(
        endpoint=QUERY_PATH.lstrip("/"),
        http_conn_id=HTTP_CONN_ID,
        method="POST",
        data=json.dumps({"out_task_id": out_id}),
        poke_interval=poll,
    )


def _event_status(payload: Any) -> str:
    if isinstance(payload, dict):
        return str(payload.get("status"))
    return "success" if payload is True else repr(payload)[:40]


async def _wait_all(
    make: Callable[[str], Any], ids: list[str], args: argparse.Namespace, write: Callable[[dict[str, Any]], None]
) -> None:
    gc.collect()
    await asyncio.sleep(0)
    baseline = _proc_status()["VmRSS"]
    hwm_reset = _reset_peak_rss()
    triggers = [make(out_id) for out_id in ids]
    n = len(ids)
    events: dict[str, tuple[float, str]] = {}
    crashes: dict[str, str] = {}
    returned = [0]
    samples: list[tuple[float, float, int, int]] = []
    report_once = threading.Lock()
    all_done = threading.Event()

    async def consume(index: int, trigger: Any, out_id: str) -> None:
        if args.stagger:
            await asyncio.sleep(args.stagger * index / n)
        # Like the triggerer: iterate the generator to its end, keep the events it yields.
        try:
            async for event in trigger.run():
                events.setdefault(out_id, (time.time(), _event_status(event.payload)))
        except Exception as exc:
            crashes[out_id] = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            returned[0] += 1

    def report() -> bool:
        """Write the figures once (from the loop or from the watchdog); whether this call wrote them."""
        if not report_once.acquire(blocking=False):
            return False
        ended, cpu = time.time(), time.process_time() - cpu_start - sampler_cpu[0]
        status = _proc_status()
        rss_seen = [sample[2] for sample in list(samples)] + [status["VmRSS"]]
        write(
            {
                "baseline_rss": baseline,
                "hwm_reset": hwm_reset,
                "peak_rss": status["VmHWM"] if hwm_reset else max(rss_seen),
                "peak_threads": max([sample[3] for sample in list(samples)] + [status["Threads"]]),
                "started": started,
                "ended": ended,
                "cpu": cpu,
                "unfinished": n - returned[0],
                "events": dict(events),
                "crashes": dict(crashes),
                "samples": list(samples),
                "gc": dict(gc_seen),
            }
        )
        return True

    def watch() -> None:
        # A thread, so it samples and enforces the limit even while the loop is stuck in long steps.
        # Its own CPU (reading /proc twice a second) is left out of every figure: it is the same for
        # every kind and would only pull the ratios towards 1.
        limit = started + args.max_wait
        own_start = time.thread_time()
        while not all_done.wait(0.5):
            status = _proc_status()
            sampler_cpu[0] = time.thread_time() - own_start
            samples.append((time.time(), time.process_time() - sampler_cpu[0], status["VmRSS"], status["Threads"]))
            if time.time() >= limit and report():
                # Cancelling thousands of queued requests can itself take minutes: leave at once.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)

    gc_seen = _count_collections()
    sampler_cpu = [0.0]
    cpu_start, started = time.process_time(), time.time()
    watchdog = threading.Thread(target=watch, name="capacity-watchdog", daemon=True)
    watchdog.start()
    os.write(args.ready_fd, f"READY {started!r}\n".encode())
    os.close(args.ready_fd)
    tasks = [
        asyncio.create_task(consume(i, trigger, out_id))
        for i, (trigger, out_id) in enumerate(zip(triggers, ids, strict=True))
    ]
    await asyncio.wait(tasks)
    all_done.set()
    watchdog.join()
    report()


def child_main(args: argparse.Namespace) -> int:
    """Trigger process: run the triggers of ``args.child`` and write the figures as JSON."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    ids: list[str] = json.loads(Path(args.ids_file).read_text())
    polls = [0]
    deadline = time.time() + args.max_wait + 120
    # What a running triggerer has imported before these triggers start: the triggerer itself (its
    # supervisor and comms) and the SDK's async connection lookup, loaded by the first trigger that
    # read a connection. Without them every kind would pay Airflow's one-off imports inside its first
    # polls (about 25 ms), a cost of the process, not of a wait.
    for module in TRIGGERER_LOADED:
        importlib.import_module(module)

    make = _trigger_factory(args.child, args.poll_interval, deadline, polls)

    def write(result: dict[str, Any]) -> None:
        result["polls"] = polls[0]
        result["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        Path(args.result_file).write_text(json.dumps(result))

    profile_to = os.environ.get("AIREITER_BENCH_PROFILE")
    if profile_to and args.child == AIREITER:
        import cProfile

        cProfile.runctx("asyncio.run(_wait_all(make, ids, args, write))", globals(), locals(), profile_to)
    else:
        asyncio.run(_wait_all(make, ids, args, write))
    return 0


# ======================================================================== servers (this process)


class Gate:
    """The emulator's query, with the HTTP status a 404-polling sensor understands.

    An asyncio HTTP/1.1 endpoint on its own thread (a thread per connection cannot accept 5,000
    new connections at once quickly enough). Same path, body and Bearer check as the emulator;
    the answer comes from the emulator's own query code and its request counters see every call.
    HTTP 404 until the task has finished, then HTTP 200 with the same body.
    """

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the gate did not start")

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        current = asyncio.current_task()
        clients = [task for task in asyncio.all_tasks() if task is not current]
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    name, colon, value = line.partition(":")
                    if colon:
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                status, payload = self._answer(method, path, headers.get("authorization", ""), raw)
                data = json.dumps(payload).encode()
                reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # the client closed the connection (aiohttp does after each poll) or sent garbage
        finally:
            writer.close()

    def _answer(self, method: str, path: str, authorization: str, raw: bytes) -> tuple[int, Any]:
        if method != "POST" or path != QUERY_PATH:
            return 404, {"error": "not found"}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        state = self.emulator.state
        state.record(method, path, body, "query")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.emulator.api_key.encode()
        ):
            return 401, {"ok": True, "statusCode": 401, "message": "unauthorized"}
        payload = state.query(body)
        data = payload.get("data") if isinstance(payload, dict) else None
        finished = isinstance(data, dict) and data.get("status") in ("completed", "failed")
        return (200 if finished else 404), payload


@contextmanager
def servers(log_limit: int) -> Iterator[tuple[Any, Gate]]:
    """The emulator and the gate, both stopped on the way out."""
    from airflow_provider_aireiter.testing.emulator import Emulator

    emulator = Emulator(credits=10**12, durations={"*": (1.0, NEVER)}, log_limit=log_limit)
    gate = Gate(emulator)
    emulator.start()
    try:
        gate.start()
        yield emulator, gate
    finally:
        gate.stop()
        emulator.stop()


# ======================================================================== one run


@dataclass
class Run:
    kind: str
    n: int
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: the rounds this row is the median of (empty for a single run)
    rounds: list[Run] = field(default_factory=list)


def combine(runs: list[Run]) -> Run:
    """One row for the rounds of one (kind, N): each metric's median over the rounds that measured it."""
    if len(runs) == 1:
        return runs[0]
    merged = Run(runs[0].kind, runs[0].n, rounds=list(runs))
    for key in {key for run in runs for key in run.metrics}:
        merged.metrics[key] = statistics.median(run.metrics[key] for run in runs if key in run.metrics)
    merged.problems = [f"round {i}: {problem}" for i, run in enumerate(runs, 1) for problem in run.problems]
    merged.seconds = sum(run.seconds for run in runs)
    return merged


def paired_ratio(ours: Run, other: Run, key: str) -> tuple[float | None, list[float]]:
    """``key``'s ratio ours / other: the median of the per-round ratios (each round's two runs ran
    minutes apart, on the same machine load), with those ratios; a single run's plain ratio."""
    pairs = list(zip(ours.rounds, other.rounds, strict=False)) if ours.rounds and other.rounds else [(ours, other)]
    ratios = [a.metrics[key] / b.metrics[key] for a, b in pairs if key in a.metrics and b.metrics.get(key)]
    return (statistics.median(ratios) if ratios else None), ratios


def _tail(log: Path, lines: int = 3) -> list[str]:
    return [line[:200] for line in log.read_text(errors="replace").splitlines()[-lines:]]


def _submit(emulator: Any, ids: list[str]) -> None:
    import requests

    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {emulator.api_key}"
        for out_id in ids:
            answer = session.post(
                emulator.base_url + SUBMIT_PATH,
                json={"model": MODEL, "params": {"prompt": "capacity benchmark"}, "out_task_id": out_id},
                timeout=30,
            ).json()
            if answer.get("statusCode") != 200:
                raise RuntimeError(f"submit of {out_id} failed: {answer}")


def _complete_on_schedule(
    emulator: Any, schedule: list[tuple[float, str]], completed: dict[str, float], stop: threading.Event
) -> None:
    for due, out_id in schedule:
        wait = due - time.time()
        if wait > 0 and stop.wait(wait):
            return
        if stop.is_set():
            return
        emulator.complete_task(out_id)
        completed[out_id] = time.time()


def _read_ready(fd: int, child: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Wait for the child's ``READY <epoch>`` line; ``None`` if it exits or stays silent."""
    buffer = b""
    limit = time.monotonic() + timeout
    while b"\n" not in buffer:
        left = limit - time.monotonic()
        if left <= 0 or (child.poll() is not None and not select.select([fd], [], [], 0)[0]):
            return None
        if select.select([fd], [], [], min(left, 0.5))[0]:
            chunk = os.read(fd, 256)
            if not chunk:
                return None
            buffer += chunk
    return float(buffer.split(b"\n", 1)[0].split()[1])


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def _interpolate_cpu(samples: list[list[float]], when: float) -> float | None:
    """Process CPU seconds at ``when``, interpolated between the sampler's readings."""
    for before, after in pairwise(samples):
        if before[0] <= when <= after[0]:
            span = after[0] - before[0]
            share = (when - before[0]) / span if span > 0 else 0.0
            return before[1] + share * (after[1] - before[1])
    return None


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def run_one(
    kind: str,
    n: int,
    emulator: Any,
    gate: Gate,
    args: argparse.Namespace,
    workdir: Path,
    children: list[Any],
    round_no: int = 1,
) -> Run:
    run = Run(kind, n)
    began = time.monotonic()
    emulator.reset()
    ids = [f"cap-{kind.replace('_', '-')}-{n}-{i:05d}" for i in range(n)]
    _submit(emulator, ids)
    tag = f"{kind}-{n}-r{round_no}"
    ids_file, result_file, log_file = (workdir / f"{tag}.{ext}" for ext in ("ids.json", "result.json", "log"))
    ids_file.write_text(json.dumps(ids))
    result_file.unlink(missing_ok=True)
    http_host = emulator.base_url if kind == PEER_DIRECT else gate.base_url
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(workdir / "airflow_home"),
            "AIRFLOW_CONN_AIREITER_DEFAULT": emulator.conn_json,
            f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}": json.dumps(
                {
                    "conn_type": "http",
                    "host": http_host,
                    "extra": {"Authorization": f"Bearer {emulator.api_key}", "Content-Type": "application/json"},
                }
            ),
        }
    )
    max_wait = args.finish_after + args.spread + 3 * args.poll_interval + args.grace
    read_fd, write_fd = os.pipe()
    command = [sys.executable, os.path.abspath(__file__), "--child", kind if kind in (AIREITER, FLOOR) else PEER]
    command += ["--ids-file", str(ids_file), "--result-file", str(result_file), "--ready-fd", str(write_fd)]
    command += ["--poll-interval", repr(args.poll_interval), "--max-wait", repr(max_wait)]
    command += ["--stagger", repr(args.stagger)]
    stop = threading.Event()
    completed: dict[str, float] = {}
    scheduler: threading.Thread | None = None
    with open(log_file, "wb") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,))
    children.append(child)
    os.close(write_fd)
    try:
        started = _read_ready(read_fd, child, timeout=300)
        if started is None:
            with suppress(subprocess.TimeoutExpired):
                child.wait(10)
            run.problems.append(f"trigger process did not start (exit {child.returncode})")
            run.log_tail = _tail(log_file)
            return run
        # Completion times spread evenly over [finish_after, finish_after + spread), in shuffled order.
        order = list(ids)
        random.Random(n).shuffle(order)
        schedule = [(started + args.finish_after + args.spread * i / n, out_id) for i, out_id in enumerate(order)]
        scheduler = threading.Thread(target=_complete_on_schedule, args=(emulator, schedule, completed, stop))
        scheduler.start()
        try:
            child.wait(max_wait + 60)
        except subprocess.TimeoutExpired:
            run.problems.append("trigger process overran its time limit and was killed")
    finally:
        stop.set()
        if scheduler is not None:
            scheduler.join(30)
        _stop_child(child)
        os.close(read_fd)
        children.remove(child)
    run.seconds = time.monotonic() - began
    if child.returncode != 0 or not result_file.exists():
        run.problems.append(f"trigger process exited with {child.returncode} and wrote no figures")
        run.log_tail = _tail(log_file)
        return run
    result = json.loads(result_file.read_text())
    _fill_metrics(run, result, emulator, completed, args, log_file)
    return run


def _fill_metrics(
    run: Run, result: dict[str, Any], emulator: Any, completed: dict[str, float], args: argparse.Namespace, log: Path
) -> None:
    m = run.metrics
    n = run.n
    started, ended, cpu = result["started"], result["ended"], result["cpu"]
    wall = max(ended - started, 1e-9)
    polls = result["polls"]
    server_log = [entry for entry in emulator.requests() if entry["path"] == QUERY_PATH]
    m["baseline_mb"] = result["baseline_rss"] / MIB
    m["rss_mb"] = (result["peak_rss"] - result["baseline_rss"]) / MIB
    m["rss_kb_per_wait"] = m["rss_mb"] * 1024 / n
    m["cpu_s"] = cpu
    m["wall_s"] = wall
    m["cpu_pct"] = 100 * cpu / wall
    m["polls_per_task"] = polls / n
    m["server_queries"] = emulator.query_count()
    if m["server_queries"]:
        m["cpu_ms_per_poll"] = 1000 * cpu / m["server_queries"]
    m["server_queries_per_task"] = m["server_queries"] / n
    first_seen: dict[str, float] = {}
    for entry in server_log:
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        first_seen.setdefault(str(body.get("out_task_id")), entry["time"])
    m["polled_once"] = len(first_seen)
    if len(first_seen) >= n:
        m["first_poll_burst_s"] = max(first_seen.values()) - started
    # Steady window: whole poll intervals after the first polls, before the first completion.
    offset = args.stagger + args.poll_interval / 2
    whole = math.floor((args.finish_after - offset) / args.poll_interval)
    if whole >= 1:
        low = started + offset
        high = low + whole * args.poll_interval
        cpu_low, cpu_high = _interpolate_cpu(result["samples"], low), _interpolate_cpu(result["samples"], high)
        in_window = sum(1 for entry in server_log if low <= entry["time"] < high)
        if cpu_low is not None and cpu_high is not None:
            m["cpu_pct_steady"] = 100 * (cpu_high - cpu_low) / (high - low)
            if in_window:
                m["cpu_ms_per_poll_steady"] = 1000 * (cpu_high - cpu_low) / in_window
    events: dict[str, list[Any]] = result["events"]
    delays = [at - completed[out_id] for out_id, (at, status) in events.items() if out_id in completed]
    m["events_success"] = sum(1 for _, status in events.values() if status == "success")
    m["events_other"] = len(events) - m["events_success"]
    m["missing"] = n - len(events)
    m["early"] = sum(1 for out_id, (at, _) in events.items() if out_id not in completed or at < completed[out_id])
    if delays:
        m["delay_median"] = statistics.median(delays)
        m["delay_p95"] = _percentile(delays, 0.95)
        m["delay_max"] = max(delays)
    with log.open("rb") as lines:
        for line in lines:
            m["log_lines"] = m.get("log_lines", 0) + 1
            if b"[warning" in line or b"WARNING" in line:
                m["log_warnings"] = m.get("log_warnings", 0) + 1
    m.setdefault("log_lines", 0)
    m.setdefault("log_warnings", 0)
    m["peak_threads"] = result["peak_threads"]
    collected = result.get("gc") or {}
    m["gc_full"] = collected.get("full", 0)
    m["gc_cpu_ms"] = 1000 * collected.get("cpu", 0.0)
    m["gc_full_cpu_ms"] = 1000 * collected.get("full_cpu", 0.0)
    if not result["hwm_reset"]:
        run.problems.append("could not reset VmHWM; peak RSS is the 0.5 s sampler's maximum")
    if result["unfinished"] or result["crashes"]:
        run.problems.append(
            f"{result['unfinished']} trigger(s) still waiting at the limit, {len(result['crashes'])} crashed"
        )
        for out_id, text in list(result["crashes"].items())[:3]:
            run.problems.append(f"  {out_id}: {text}")
    if m["events_other"]:
        run.problems.append(f"{int(m['events_other'])} event(s) were not 'success'")
    if m["early"]:
        run.problems.append(f"{int(m['early'])} event(s) arrived before their task completed")
    m["nofile"] = result["nofile"]


# ======================================================================== report

ROWS: list[tuple[str, str, str, bool]] = [
    # label, metric, format, show a ratio
    ("peak RSS above baseline (MB)", "rss_mb", ".1f", True),
    ("  per wait (KB)", "rss_kb_per_wait", ".1f", True),
    ("CPU per poll, whole wait (ms)", "cpu_ms_per_poll", ".3f", True),
    ("CPU per poll, steady window (ms)", "cpu_ms_per_poll_steady", ".3f", True),
    ("polls started per task (trigger process)", "polls_per_task", ".2f", True),
    ("queries received per task (server)", "server_queries_per_task", ".2f", True),
    ("queries received in total (server)", "server_queries", ".0f", False),
    ("tasks polled at least once", "polled_once", ".0f", False),
    ("event delay after completion, median (s)", "delay_median", ".2f", True),
    ("event delay after completion, p95 (s)", "delay_p95", ".2f", True),
    ("event delay after completion, max (s)", "delay_max", ".2f", False),
    ("CPU % of one core, whole wait", "cpu_pct", ".2f", True),
    ("CPU % of one core, steady window", "cpu_pct_steady", ".2f", True),
    ("CPU seconds, whole wait", "cpu_s", ".2f", True),
    ("wall seconds, start to last event", "wall_s", ".1f", False),
    ("first poll of every task done after (s)", "first_poll_burst_s", ".2f", False),
    ("events success / other / missing", "", "", False),
    ("log lines written", "log_lines", ".0f", False),
    ("  of which warnings", "log_warnings", ".0f", False),
    ("peak OS threads", "peak_threads", ".0f", False),
    ("garbage collector CPU, all runs (ms)", "gc_cpu_ms", ".0f", False),
    ("  full collections", "gc_full", ".0f", False),
    ("  CPU of the full collections (ms)", "gc_full_cpu_ms", ".0f", False),
    ("baseline RSS (MB)", "baseline_mb", ".1f", False),
]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(n: int, ours: Run, peer: Run | None, against: str = PEER) -> None:
    label = f"N = {n:,} concurrent waits" + ("" if against == PEER else f", against the {LABELS[against]}")
    print(f"\n{label}\n{'-' * len(label)}")
    peer_name = LABELS[against]
    print(f"{'metric':<44}{LABELS[AIREITER]:>12}{peer_name:>20}{'ratio':>9}")
    for title, key, spec, ratio in ROWS:
        if not key:
            cells = []
            for run in (ours, peer):
                if run is None or not run.metrics:
                    cells.append("n/a")
                else:
                    got = run.metrics
                    cells.append(f"{got['events_success']:.0f}/{got['events_other']:.0f}/{got['missing']:.0f}")
            print(f"{title:<44}{cells[0]:>12}{cells[1]:>20}")
            continue
        a = ours.metrics.get(key)
        b = peer.metrics.get(key) if peer is not None else None
        shown = extra = ""
        if ratio and peer is not None:
            median, each = paired_ratio(ours, peer, key)
            if median is not None:
                shown = f"{median:.2f}"
                if len(each) > 1 and key.startswith("cpu_ms_per_poll"):
                    extra = "  (rounds: " + ", ".join(f"{r:.2f}" for r in each) + ")"
        print(f"{title:<44}{_fmt(a, spec):>12}{_fmt(b, spec):>20}{shown:>9}{extra}")
    for run in (ours, peer):
        if run is not None:
            for problem in run.problems:
                print(f"  ! {LABELS[run.kind]}: {problem}")
    count = len(ours.rounds) or 1
    how = f"figures are medians of {count} rounds, ratios the median of the per-round ratios; " if count > 1 else ""
    print(f"  ({how}ratio = AIReiter / {peer_name}; lower is better for AIReiter)")


def print_targets(results: dict[tuple[str, int], Run], args: argparse.Namespace) -> None:
    print("\nTargets (AireiterTaskTrigger)")
    print("-----------------------------")
    ours = results.get((AIREITER, TARGET_N))
    if ours is None or "rss_mb" not in ours.metrics:
        print(f"[ n/a] {TARGET_N:,} waits within {TARGET_MB:.0f} MB above baseline: N={TARGET_N:,} was not measured")
    else:
        got = ours.metrics["rss_mb"]
        verdict = "PASS" if got <= TARGET_MB else "FAIL"
        print(f"[{verdict}] {TARGET_N:,} waits within {TARGET_MB:.0f} MB above baseline: {got:.1f} MB")
    steady = ours.metrics.get("cpu_pct_steady", ours.metrics.get("cpu_pct")) if ours is not None else None
    what = "steady window" if ours is not None and "cpu_pct_steady" in ours.metrics else "whole wait"
    if steady is None:
        print(f"[ n/a] under {TARGET_CPU_PCT:.0f} % of one core for {TARGET_N:,} waits: not measured")
    elif args.poll_interval != TARGET_POLL:
        print(
            f"[ n/a] under {TARGET_CPU_PCT:.0f} % of one core at a {TARGET_POLL:.0f} s poll interval: "
            f"measured {steady:.2f} % ({what}) at {args.poll_interval:g} s instead"
        )
    else:
        verdict = "PASS" if steady < TARGET_CPU_PCT else "FAIL"
        print(
            f"[{verdict}] under {TARGET_CPU_PCT:.0f} % of one core, {TARGET_N:,} waits at a "
            f"{TARGET_POLL:.0f} s poll interval: {steady:.2f} % ({what})"
        )
    for key, title in (("cpu_ms_per_poll", "whole wait"), ("cpu_ms_per_poll_steady", "steady window")):
        pairs = []
        worse = []
        for n in args.sizes:
            a = results.get((AIREITER, n))
            b = results.get((PEER, n))
            x = a.metrics.get(key) if a else None
            y = b.metrics.get(key) if b else None
            if a is not None and a.metrics and x is None and y is not None:
                # AIReiter used CPU but no query of its reached the server (in the window).
                pairs.append(f"N={n:,} no AIReiter query answered vs {y:.3f} ms")
                worse.append(n)
            elif x is None or y is None:
                pairs.append(f"N={n:,} n/a")
            else:
                assert a is not None and b is not None
                median, rounds = paired_ratio(a, b, key)
                each = f"; rounds {', '.join(f'{r:.2f}' for r in rounds)}" if len(rounds) > 1 else ""
                pairs.append(f"N={n:,} {x:.3f} vs {y:.3f} ms ({median:.2f}x{each})")
                if median is None or median > TARGET_PEER_RATIO:
                    worse.append(n)
        measured = [p for p in pairs if not p.endswith("n/a")]
        verdict = "n/a" if not measured else ("FAIL" if worse else "PASS")
        print(f"[{verdict:>4}] CPU per poll at most {TARGET_PEER_RATIO:g}x the peer's ({title}): " + "; ".join(pairs))


def _versions() -> str:
    names = ("apache-airflow", "airflow-provider-aireiter", "apache-airflow-providers-http", "aiohttp")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def print_header(args: argparse.Namespace) -> None:
    start = f"evenly over {args.stagger:g} s" if args.stagger else "all at once"
    limit = args.finish_after + args.spread + 3 * args.poll_interval + args.grace
    print("Triggerer capacity: AireiterTaskTrigger vs the http provider's HttpSensorTrigger")
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(
        f"parameters: sizes {', '.join(f'{n:,}' for n in args.sizes)}; poll interval {args.poll_interval:g} s; "
        f"tasks complete {args.finish_after:g} to {args.finish_after + args.spread:g} s after the triggers start "
        f"(evenly spread, shuffled); triggers started {start}; limit per run {limit:g} s"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, open files limit {soft}/{hard}"
    )
    print(f"versions: {_versions()}")


NOTES = """
Notes
-----
* Each (kind, N) ran in a fresh Python process: imports first (each kind's own, and for every kind what
  a running triggerer has loaded: airflow.jobs.triggerer_job_runner and the SDK's async connection
  lookup), then the baseline RSS, then N triggers
  created and all run() generators started as asyncio tasks, at once unless --stagger is given (at once,
  every first poll lands together, as after a triggerer restart), each consumed to its end like the
  triggerer does. Peak RSS is VmHWM after resetting it at the baseline (/proc/self/clear_refs). CPU is
  that process's user+system time from the start of the triggers to the last event, less the CPU of
  its sampler thread (below); the emulator and
  the gate run in the benchmark's own process, so their CPU and memory are not counted.
* Polls started are counted in the trigger process (a counting wrapper around AireiterHook.afind_task
  and HttpAsyncHook.run, at the start of each call); queries received are the emulator's own counter.
  CPU per poll divides CPU seconds by the queries the server received.
* Steady window: whole poll intervals from half an interval after the last trigger started until the
  first completion; CPU in it (0.5 s samples, interpolated) over the server-counted queries in it.
* A watchdog thread in the trigger process samples CPU and RSS every 0.5 s and enforces the time limit
  even when the event loop is stuck in long steps (its own CPU, from time.thread_time, is left out); a
  process still waiting at its limit writes its figures and exits without cancelling its triggers
  (that could itself take minutes).
* Delay = event arrival in the trigger process minus the moment the emulator marked the task completed
  (both wall clock, same machine). From polling alone the expected delay is uniform between 0 and one
  poll interval (median about half an interval).
* HttpSensorTrigger fires when a request does not raise, and keeps polling only on HTTP 404; the
  emulator's query answers HTTP 200 for a running task, so the peer was pointed at a gate (an asyncio
  HTTP endpoint in the benchmark's process, on another port): same path, JSON body and Bearer key (the
  key and content type sent as headers from the http connection's extra), answered by the emulator's
  own query code and counted by its request counters, but with HTTP 404 until the task completed.
  The peer makes one aiohttp ClientSession (a new TCP connection) per poll and logs a warning for each
  404; AireiterTaskTrigger's polls share one pool of keep-alive connections per event loop (the
  provider's aiohttp session, at most 32 requests at once). The aiohttp loop polls the real query
  endpoint on one shared session (at most 32 at once), each sleeping its interval give or take
  a tenth like the provider's trigger, with no retries, no parsing beyond JSON and no logging.
* Machine is shared and noisy: each configuration ran --rounds times, interleaved; figures are
  medians, ratios the median of the per-round ratios (every round's CPU-per-poll ratio is listed).
""".rstrip()


def direct_check(emulator: Any, gate: Gate, args: argparse.Namespace, workdir: Path, children: list[Any]) -> str:
    """Point the peer at the emulator's real query endpoint, with tasks that never finish."""
    check = argparse.Namespace(**vars(args))
    check.poll_interval, check.finish_after, check.spread, check.grace, check.stagger = 1.0, 30.0, 0.0, 0.0, 0.0
    run = run_one(PEER_DIRECT, 5, emulator, gate, check, workdir, children)
    got = run.metrics
    if not got:
        return "direct check failed: " + "; ".join(run.problems)
    return (
        f"HttpSensorTrigger pointed at the emulator's own {QUERY_PATH} (tasks still processing): "
        f"{got['events_success']:.0f} of 5 fired, after {got['polls_per_task']:.1f} poll(s) each, "
        f"{got['early']:.0f} before their task completed."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated N values (default 100,1000,5000)")
    parser.add_argument("--poll-interval", type=float, default=10.0, help="seconds between polls (default 10)")
    parser.add_argument(
        "--finish-after", type=float, default=25.0, help="first task completes this long after start (default 25)"
    )
    parser.add_argument(
        "--spread", type=float, default=None, help="completions spread over this many seconds (default: one poll)"
    )
    parser.add_argument("--grace", type=float, default=30.0, help="extra seconds a run may take (default 30)")
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="start the triggers evenly over this many seconds instead of all at once (default 0)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each (kind, N), interleaved; figures are medians, ratios the median per-round ratio (default 3)",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the trigger processes' logs and results in DIR")
    parser.add_argument("--skip-direct-check", action="store_true", help="skip the peer-on-the-real-endpoint check")
    parser.add_argument("--child", choices=(AIREITER, PEER, FLOOR), help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-wait", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [int(part.replace("_", "")) for part in str(args.sizes).split(",") if part.strip()]
    if args.spread is None:
        args.spread = args.poll_interval
    if args.poll_interval <= 0 or args.finish_after < 0 or args.spread < 0 or not args.sizes:
        parser.error("poll interval must be > 0, times >= 0, and at least one size given")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if any(n < 1 for n in args.sizes):
        parser.error("sizes must be positive")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the benchmark like Ctrl-C does: through the clean-up below."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    signal.signal(signal.SIGTERM, _interrupt)
    print_header(args)
    began = time.monotonic()
    longest = args.finish_after + args.spread + 3 * args.poll_interval + args.grace
    log_limit = max(100_000, 2 * max(args.sizes) * (math.ceil(longest / args.poll_interval) + 2))
    runs: dict[tuple[str, int], list[Run]] = {}
    children: list[Any] = []
    direct = ""
    try:
        with tempfile.TemporaryDirectory(prefix="aireiter-capacity-") as tmp, servers(log_limit) as (emulator, gate):
            workdir = Path(args.keep) if args.keep else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            if not args.skip_direct_check:
                direct = direct_check(emulator, gate, args, workdir, children)
                print(f"\n{direct}")
            # Rounds interleaved, the kinds' order rotated each round: no kind always runs first, and
            # each round's runs share the machine's load of those minutes (the ratios are per round).
            kinds = (AIREITER, PEER, FLOOR)
            plan = [
                (kind, n, r)
                for n in args.sizes
                for r in range(1, args.rounds + 1)
                for kind in kinds[(r - 1) % 3 :] + kinds[: (r - 1) % 3]
            ]
            for index, (kind, n, r) in enumerate(plan, 1):
                load = os.getloadavg()[0]
                which = f", round {r}" if args.rounds > 1 else ""
                print(
                    f"[{index}/{len(plan)}] {LABELS[kind]}, N={n:,}{which} (load average {load:.1f}) ...",
                    end=" ",
                    flush=True,
                )
                run = run_one(kind, n, emulator, gate, args, workdir, children, round_no=r)
                runs.setdefault((kind, n), []).append(run)
                print(f"{run.seconds:.0f} s" + (" (problems, see below)" if run.problems else ""), flush=True)
                if run.log_tail:
                    print("  last lines of its log:\n    " + "\n    ".join(run.log_tail))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the trigger processes and the emulator")
        return 130
    finally:
        for child in list(children):
            with suppress(Exception):
                _stop_child(child)
    results = {key: combine(found) for key, found in runs.items()}
    for n in args.sizes:
        print_table(n, results[(AIREITER, n)], results.get((PEER, n)))
        floor = results.get((FLOOR, n))
        if floor is not None:
            print_table(n, results[(AIREITER, n)], floor, against=FLOOR)
    print_targets(results, args)
    print(NOTES)
    print(f"\nTotal time: {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
