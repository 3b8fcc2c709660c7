"""Where does a trigger's poll spend its CPU? Each layer of the async query, in bursts, side by side.

N tasks (default 100) are submitted to the bundled emulator, which runs in a child process (so its
CPU is not counted) and keeps every task running. This process then sends bursts of N concurrent
queries, one per task, through each layer in turn, and measures the CPU of each burst
(``time.process_time``) divided by N:

* ``aiohttp``: a bare ``ClientSession.post`` on one shared session, at most 32 at once, body read as
  JSON (what the library itself costs; nothing else);
* ``transport``: the provider's loop transport (the same aiohttp session per event loop, with its
  slots, timeouts, proxy lookup and size limit; answers not parsed);
* ``hook``: ``AireiterHook.afind_task``, a whole poll as the trigger sends it (the transport, the
  retry policy's first try, the envelope checks, the typed result and errors);
* ``HttpAsyncHook``: the http provider's ``HttpAsyncHook.run``, what its ``HttpSensorTrigger`` sends
  per poll (a new session and connection each time), the peer;
* ``hook, no network``: ``afind_task`` again, with the loop transport answering every query from
  memory (a real answer, kept) during the burst: the hook's own code, and
* ``no network``: awaiting that canned answer alone (what the harness itself costs per query).

Bursts are interleaved, the layers' order rotated each round, after one warm-up burst each; the
figures are medians over the rounds. Unlike ``triggerer_capacity.py`` there are no sleeps between
polls, no triggers and no log lines: this isolates the request path.

Run: ``.venv/bin/python benchmarks/poll_layers.py [--tasks 100] [--rounds 100]`` (needs the
``bench`` extra). About a minute. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

QUERY_PATH = "/api/openapi/query"
SUBMIT_PATH = "/api/openapi/submit"
HTTP_CONN_ID = "poll_layers_http"


def start_emulator() -> tuple[subprocess.Popen[str], str, str, str]:
    """The emulator CLI on a free port, its clock slowed so no task finishes: process, URL, key, conn."""
    command = [sys.executable, "-m", "airflow_provider_aireiter.testing.emulator", "--port", "0"]
    command += ["--speed", "0.0001", "--credits", str(10**9), "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if "AIRFLOW_CONN_" in line and "{" in line:
            url = re.search(r"listening on (\S+)", seen)
            key = re.search(r"API key: (\S+)", seen)
            if url and key:
                return process, url.group(1), key.group(1), line.split("=", 1)[1].strip().strip("'")
    process.kill()
    raise RuntimeError(f"the emulator did not start:\n{seen}")


def submit(base_url: str, key: str, ids: list[str]) -> None:
    import requests

    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {key}"
        for out_id in ids:
            body = {"model": "seedream_v5_lite", "params": {"prompt": "poll layers"}, "out_task_id": out_id}
            answer = session.post(base_url + SUBMIT_PATH, json=body, timeout=30).json()
            if answer.get("statusCode") != 200:
                raise RuntimeError(f"submit of {out_id} failed: {answer}")


async def measure(base_url: str, key: str, ids: list[str], rounds: int) -> dict[str, list[float]]:
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    from airflow_provider_aireiter.hooks import transport as async_transport
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook

    url = base_url + QUERY_PATH
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [json.dumps({"out_task_id": out_id}).encode() for out_id in ids]
    slots = asyncio.Semaphore(32)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
    hooks = [AireiterHook() for _ in ids]
    peers = [HttpAsyncHook(method="POST", http_conn_id=HTTP_CONN_ID) for _ in ids]

    async def bare(k: int) -> Any:
        async with slots, session.post(url, data=bodies[k], headers=headers) as response:
            return await response.json(content_type=None)

    async def transport(k: int) -> Any:
        return await async_transport.loop_transport().post(url, bodies[k], headers, 30.0)

    async def hook(k: int) -> Any:
        info = await hooks[k].afind_task(ids[k])
        assert info is not None and not info.is_terminal, info
        return info

    async def peer(k: int) -> Any:
        # Its answer is not read, as in HttpSensorTrigger (the connection is dropped with the response).
        return await peers[k].run(endpoint=QUERY_PATH.lstrip("/"), data=bodies[k].decode())

    # The hook's own code: the same polls, with the transport answering from memory (the last real
    # answer) for the length of the burst. What the hook adds on top of the request itself.
    real_transport = async_transport.loop_transport
    answer = await real_transport().post(url, bodies[0], headers, 30.0)

    class Canned:
        async def post(self, *args: Any) -> Any:
            return answer

    canned = Canned()

    @contextlib.contextmanager
    def answered_from_memory() -> Iterator[None]:
        from airflow_provider_aireiter.hooks import aireiter as hook_module

        async_transport.loop_transport = hook_module.loop_transport = lambda: canned  # type: ignore[assignment,return-value]
        try:
            yield
        finally:
            async_transport.loop_transport = hook_module.loop_transport = real_transport

    async def from_memory(k: int) -> Any:
        return await canned.post()

    layers: dict[str, Callable[[int], Awaitable[Any]]] = {
        "aiohttp": bare,
        "transport": transport,
        "hook": hook,
        "HttpAsyncHook": peer,
        "hook, no network": hook,
        "no network": from_memory,
    }
    contexts = {"hook, no network": answered_from_memory}
    figures: dict[str, list[float]] = {name: [] for name in layers}
    try:
        for layer in layers.values():
            await asyncio.gather(*(layer(k) for k in range(len(ids))))  # warm-up: connections, lookups
        names = list(layers)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                await asyncio.sleep(0.05)  # let the last burst's connection cleanup run outside the window
                with contexts.get(name, contextlib.nullcontext)():
                    began = time.process_time()
                    await asyncio.gather(*(layers[name](k) for k in range(len(ids))))
                    figures[name].append((time.process_time() - began) / len(ids) * 1000)
    finally:
        await session.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks, and queries per burst (default 100)")
    parser.add_argument("--rounds", type=int, default=100, help="bursts of each layer (default 100)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.rounds < 1:
        parser.error("--tasks and --rounds must be at least 1")
    # The peer's dropped connections are logged as "Unclosed connection" by asyncio when collected; not
    # printing those lines keeps the output readable and only spares the peer's CPU.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    process, base_url, key, conn = start_emulator()
    try:
        os.environ["AIRFLOW_CONN_AIREITER_DEFAULT"] = conn
        os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "http", "host": base_url, "extra": {"Authorization": f"Bearer {key}"}}
        )
        ids = [f"layers-{i:05d}" for i in range(args.tasks)]
        submit(base_url, key, ids)
        figures = asyncio.run(measure(base_url, key, ids, args.rounds))
    finally:
        process.terminate()
        process.wait(timeout=30)
    median = {name: statistics.median(values) for name, values in figures.items()}
    peer, floor = median["HttpAsyncHook"], median["aiohttp"]
    print("Poll layers: CPU per query in bursts of concurrent queries to the emulator")
    print(f"{args.tasks} queries per burst, {args.rounds} bursts per layer, load average {os.getloadavg()[0]:.1f}")
    print(f"{'layer':<16}{'ms per query':>14}{'p25':>8}{'p75':>8}{'/ HttpAsyncHook':>17}{'/ aiohttp':>11}")
    for name, values in figures.items():
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        ratios = f"{median[name] / peer:>17.2f}{median[name] / floor:>11.2f}"
        print(f"{name:<16}{median[name]:>14.3f}{q1:>8.3f}{q3:>8.3f}{ratios}")
    print("(medians over the bursts; the emulator's CPU is in another process and not counted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
