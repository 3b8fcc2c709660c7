"""Seeded fault soak of the promise "a submit is never sent twice, a retried task never pays twice, no output is lost".

Some 230 generations go through the public API against emulators that make every reused
``out_task_id`` a second, paid task (``duplicate_policy="create_new"``): most through the hook
(submit, wait, download), the rest through mapped operators run for real with ``dag.test()``, sync
and deferred. Each generation draws its faults from ``random.Random`` seeded from
``AIREITER_SOAK_SEED``: background rates on submit, query and media, plus a planned scenario. The
hardest one, planned many times: the submit's answer is lost after the service processed it, then
the query that should tell whether it landed fails for longer than the re-check budget. The hook
must then give up without sending the submit again; the next try (Airflow's retry) looks the
``out_task_id`` up and reattaches.

At the end, for every ``out_task_id``: one task created, and one submit received that the service
could have acted on; every generation's files complete on disk; the hard case really exercised.

Replay a failing run with ``AIREITER_SOAK_SEED=<seed> .venv/bin/python -m pytest tests/soak -q``
(``AIREITER_SOAK_SEED=random`` picks a new seed from the clock).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

import airflow_provider_aireiter.exceptions as aireiter_exceptions
from airflow_provider_aireiter.api_types import attempt_id
from airflow_provider_aireiter.hooks.aireiter import AireiterHook
from airflow_provider_aireiter.hooks.transport import StatusKind
from airflow_provider_aireiter.retry import AireiterRetryPolicy
from airflow_provider_aireiter.testing.emulator import Emulator, Fault
from tests.operators.dagtest_helpers import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

SEED_ENV = "AIREITER_SOAK_SEED"
DEFAULT_SEED = 20260601

#: generations through the hook, run by HOOK_WORKERS threads, each with its own emulator
HOOK_GENERATIONS = 176
HOOK_WORKERS = 6
#: generations per mapped operator task; four mapped tasks (Seedream and generic, sync and deferred)
OPERATOR_GENERATIONS_PER_TASK = 14
OPERATOR_TASKS = (
    ("seedream_sync", "SeedreamV5LiteOperator", False),
    ("seedream_deferred", "SeedreamV5LiteOperator", True),
    ("generic_sync", "AireiterGenerateOperator", False),
    ("generic_deferred", "AireiterGenerateOperator", True),
)
#: tries of one hook generation (what Airflow's retries would be)
MAX_HOOK_TRIES = 8
#: Airflow retries of each operator task within one dag.test run, and dag.test runs of the soak DAG
OPERATOR_RETRIES = 3
MAX_DAG_RUNS = 4

REQUEST_TIMEOUT = 1.0
RECHECK_DELAY = 0.4
RECHECK_BUDGET = 0.5
#: a slow submit lands after the client timed out but before the re-check asks (timeout + delay)
SLOW_SUBMIT_SECONDS = REQUEST_TIMEOUT + 0.05
#: a slow query or download always outlasts the request timeout
SLOW_SECONDS = REQUEST_TIMEOUT + 0.2
RETRY_KNOBS: dict[str, Any] = {
    "max_attempts": 4,
    "base_delay": 0.01,
    "max_delay": 0.05,
    "max_retry_after": 0.05,
    "recheck_delay": RECHECK_DELAY,
    "recheck_budget": RECHECK_BUDGET,
}
CONN_EXTRA: dict[str, Any] = {
    "timeout": REQUEST_TIMEOUT,
    "max_attempts": RETRY_KNOBS["max_attempts"],
    "retry_base_delay": RETRY_KNOBS["base_delay"],
    "retry_max_delay": RETRY_KNOBS["max_delay"],
    "recheck_delay": RECHECK_DELAY,
    "recheck_budget": RECHECK_BUDGET,
}

#: the error the hook raises when it cannot tell whether a submit landed (new in the contract)
UNKNOWN_OUTCOME_ERROR: type[Exception] = aireiter_exceptions.AireiterSubmitOutcomeUnknownError
UNKNOWN_OUTCOME_NAME = "AireiterSubmitOutcomeUnknownError"

#: faults after which the submit was processed but its answer is lost
LOST_ANSWER_KINDS = ("reset_after_processing", "malformed_json", "slow")
#: faults the emulator answers *without* processing: the submit was received but created nothing, so a
#: re-send after the service said "api task not found" is allowed by the contract
REFUSED_KINDS = frozenset({"http_429", "http_500", "http_502", "http_503", "busy_429", "html"})
#: quick failures of a query
FAST_QUERY_KINDS = (
    "http_500",
    "http_502",
    "http_503",
    "reset_after_processing",
    "malformed_json",
    "busy_429",
    "http_429",
)

HOOK_SCENARIOS = {
    "lost_answer_recheck_outage": 28,
    "lost_answer_recheck_ok": 20,
    "refused_submit_recheck_outage": 5,
    "refused_submit_resent": 10,
    "query_outage_while_waiting": 7,
    "download_trouble": 10,
    "remote_failure": 5,
    "background_only": 15,
}
OPERATOR_SCENARIOS = {
    **{k: v for k, v in HOOK_SCENARIOS.items() if k != "remote_failure"},
    "lost_answer_recheck_outage": 33,
}

MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("seedream_v5_lite", {"aspect_ratio": "21:9", "resolution": "2K"}, 6),
    ("nano_banana_pro", {"aspect_ratio": "1:1"}, 2),
    ("seedance_1_5_pro", {"video_length": 5, "aspect_ratio": "16:9", "resolution": "720p"}, 2),
]


def soak_seed() -> int:
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return DEFAULT_SEED
    if raw.lower() in ("random", "time"):
        return int(time.time() * 1000) % 1_000_000_007
    return int(raw)


def replay_command(seed: int) -> str:
    return f"{SEED_ENV}={seed} .venv/bin/python -m pytest tests/soak -q"


# ------------------------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """What one generation meets on its first try (scripts) and on every try (rates)."""

    scenario: str
    model: str
    params: dict[str, Any]
    submit: list[Fault | None] = field(default_factory=list)
    query: list[Fault | None] = field(default_factory=list)
    media: list[Fault | None] = field(default_factory=list)
    #: (endpoint, fault, probability) of the background noise
    rates: list[tuple[str, Fault, float]] = field(default_factory=list)
    rate_seed: int = 0
    #: how many leading query-script items the re-check must have consumed for the outage to count
    outage_reach: int = 0

    @property
    def hard_case(self) -> bool:
        return self.scenario == "lost_answer_recheck_outage"


def _fast_fault(rng: random.Random) -> Fault:
    kind = rng.choice(FAST_QUERY_KINDS)
    return Fault(kind, retry_after=0) if kind == "http_429" else Fault(kind)


def _lost_answer(rng: random.Random) -> Fault:
    kind = rng.choice(LOST_ANSWER_KINDS)
    return Fault("slow", seconds=SLOW_SUBMIT_SECONDS) if kind == "slow" else Fault(kind)


def _refusal(rng: random.Random) -> Fault:
    kind = rng.choice(("http_500", "http_502", "http_503", "http_429", "busy_429"))
    return Fault(kind, retry_after=0) if kind == "http_429" else Fault(kind)


def _recheck_outage(rng: random.Random) -> tuple[list[Fault | None], int]:
    """Query failures that outlast the re-check budget both in time (a query slower than the request
    timeout, itself longer than the budget) and in count (at least ``max_attempts`` failures in a row)."""
    before = [_fast_fault(rng) for _ in range(rng.randint(1, 3))]
    after = [_fast_fault(rng) for _ in range(rng.randint(2, 3))]
    return [*before, Fault("slow", seconds=SLOW_SECONDS), *after], len(before) + 1


def _background_rates(rng: random.Random) -> list[tuple[str, Fault, float]]:
    level = rng.choice((0.0, 0.02, 0.05, 0.08))
    if level == 0.0:
        return []
    return [
        ("submit", Fault("reset_after_processing"), level * 0.5),
        ("submit", Fault("malformed_json"), level * 0.3),
        ("submit", Fault("http_503"), level * 0.5),
        ("submit", Fault("http_429", retry_after=0), level * 0.3),
        ("submit", Fault("busy_429"), level * 0.3),
        ("query", Fault("http_502"), level),
        ("query", Fault("http_503"), level),
        ("query", Fault("reset_after_processing"), level * 0.5),
        ("query", Fault("malformed_json"), level * 0.5),
        ("query", Fault("busy_429"), level * 0.5),
        ("query", Fault("http_429", retry_after=0), level * 0.3),
        ("query", Fault("slow", seconds=SLOW_SECONDS), level * 0.1),
        ("query", Fault("html"), level * 0.05),
        ("media", Fault("truncated_download", fraction=rng.choice((0.1, 0.5, 0.9))), level),
        ("media", Fault("reset_after_processing"), level * 0.5),
        ("media", Fault("http_503"), level * 0.5),
        ("media", Fault("slow", seconds=SLOW_SECONDS), level * 0.1),
    ]


def make_plan(rng: random.Random, scenarios: dict[str, int], *, lookup_first: bool) -> Plan:
    """One generation's faults. ``lookup_first``: the first try queries once before submitting (operators)."""
    scenario = rng.choices(list(scenarios), weights=list(scenarios.values()))[0]
    model, extra, _ = rng.choices(MODELS, weights=[w for *_, w in MODELS])[0]
    params = {"prompt": f"soak {rng.getrandbits(48):x}", **extra}
    plan = Plan(scenario, model, params, rates=_background_rates(rng), rate_seed=rng.getrandbits(32))
    lead: list[Fault | None] = [None] if lookup_first else []
    if scenario == "lost_answer_recheck_outage":
        outage, reach = _recheck_outage(rng)
        plan.submit = [_lost_answer(rng)]
        plan.query = [*lead, *outage]
        plan.outage_reach = len(lead) + reach
    elif scenario == "lost_answer_recheck_ok":
        plan.submit = [_lost_answer(rng)]
        plan.query = [*lead, *(_fast_fault(rng) for _ in range(rng.randint(0, 2)))]
    elif scenario == "refused_submit_recheck_outage":
        outage, _ = _recheck_outage(rng)
        plan.submit = [Fault(rng.choice(("http_500", "http_502", "http_503")))]
        plan.query = [*lead, *outage]
    elif scenario == "refused_submit_resent":
        plan.submit = [_refusal(rng) for _ in range(rng.randint(1, 3))]
    elif scenario == "query_outage_while_waiting":
        plan.query = [*lead, *(_fast_fault(rng) for _ in range(RETRY_KNOBS["max_attempts"] + rng.randint(0, 2)))]
    elif scenario == "download_trouble":
        kinds = ("truncated_download", "truncated_download", "reset_after_processing", "http_503", "http_429")
        chosen = [rng.choice(kinds) for _ in range(rng.randint(1, 5))]
        plan.media = [Fault(k, retry_after=0) if k == "http_429" else Fault(k) for k in chosen]
    elif scenario == "remote_failure":
        plan.submit = [Fault("task_failure", message="rejected by the soak's content review")]
    return plan


# ------------------------------------------------------------------------------------ bookkeeping


@dataclass
class Generation:
    index: int
    via: str
    out_task_id: str
    directory: Path
    plan: Plan
    emulator: Emulator
    conn_id: str
    tries: int = 0
    done_id: str | None = None
    errors: list[str] = field(default_factory=list)
    reattached: int = 0
    unknown_outcomes: int = 0
    outage_exercised: bool = False


@dataclass
class SoakReport:
    seed: int
    generations: list[Generation] = field(default_factory=list)
    emulators: list[Emulator] = field(default_factory=list)
    operator_unknown_outcomes: int = 0
    dag_runs: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def by_emulator(self) -> dict[int, list[Generation]]:
        grouped: dict[int, list[Generation]] = collections.defaultdict(list)
        for gen in self.generations:
            grouped[id(gen.emulator)].append(gen)
        return grouped


def arm(emu: Emulator, plan: Plan, *, scripts: bool, salt: int) -> None:
    """Set a generation's rates (seeded per try) and, for its first try, its scripts."""
    for endpoint in ("submit", "query", "media"):
        emu.faults.clear(endpoint)  # scripts and rates; the history of injected faults stays
    for position, (endpoint, fault, probability) in enumerate(plan.rates):
        emu.faults.rate(endpoint, fault, probability, seed=plan.rate_seed + 7919 * salt + position)
    if scripts:
        emu.faults.script("submit", plan.submit)
        emu.faults.script("query", plan.query)
        emu.faults.script("media", plan.media)


def disarm_scripts(emu: Emulator) -> None:
    for endpoint in ("submit", "query", "media"):
        emu.faults.script(endpoint, [])


def outage_reached(emu: Emulator, plan: Plan) -> bool:
    """Whether the planned lost answer was injected and the queries after it met the outage up to its slow query."""
    if not plan.hard_case:
        return False
    consumed = len(plan.query) - emu.faults.remaining("query")
    return emu.faults.remaining("submit") == 0 and consumed >= plan.outage_reach


def new_emulator(stack: contextlib.ExitStack, seed: int) -> Emulator:
    emu = Emulator(
        speed=1000,
        durations={"*": (0.0, 0.2)},
        duplicate_policy="create_new",
        credits=10**7,
        seed=seed,
    )
    stack.enter_context(emu)
    return emu


def conn_value(emu: Emulator) -> str:
    return json.dumps({"conn_type": "aireiter", "host": emu.base_url, "password": emu.api_key, "extra": CONN_EXTRA})


def soak_retry_policy() -> AireiterRetryPolicy:
    """The fast policy (the same knobs as the connections' extras)."""
    return AireiterRetryPolicy(**RETRY_KNOBS)


# ------------------------------------------------------------------------------ hook generations


def note_error(gen: Generation, error: Exception) -> None:
    gen.errors.append(type(error).__name__)
    if isinstance(error, UNKNOWN_OUTCOME_ERROR):
        gen.unknown_outcomes += 1


def submit_or_reattach(hook: AireiterHook, gen: Generation, try_number: int) -> str:
    """What the operator's next try does: reattach to a known id; submit the first unknown one."""
    for attempt in range(1, try_number + 1):
        candidate = attempt_id(gen.out_task_id, attempt)
        existing = hook.find_task(candidate)
        if existing is None:
            result = hook.submit(gen.plan.model, gen.plan.params, candidate)
            gen.reattached += int(result.reattached)
            return candidate
        if existing.kind is not StatusKind.FAILURE:
            gen.reattached += 1
            return candidate
    raise AssertionError(f"every attempt id of {gen.out_task_id} up to try {try_number} failed remotely")


def hook_try(gen: Generation, try_number: int, policy: AireiterRetryPolicy) -> None:
    """One try of a hook generation: submit (or, on a later try, look up first), wait, download."""
    from airflow.sdk import ObjectStoragePath

    hook = AireiterHook(gen.conn_id, retry_policy=policy)
    try:
        if try_number == 1:
            result = hook.submit(gen.plan.model, gen.plan.params, gen.out_task_id)
            gen.reattached += int(result.reattached)
            out_id = gen.out_task_id
        else:
            out_id = submit_or_reattach(hook, gen, try_number)
        info = hook.wait_for_task(out_id, poll_interval=0.02, timeout=30)
        directory = ObjectStoragePath(f"file://{gen.directory}/")
        for position, url in enumerate(info.output_urls):
            hook.download(url, directory, f"{out_id}_{position}")
        gen.done_id = out_id
    finally:
        hook.close()


def run_hook_generation(gen: Generation, policy: AireiterRetryPolicy) -> None:
    emu = gen.emulator
    for try_number in range(1, MAX_HOOK_TRIES + 1):
        gen.tries = try_number
        arm(emu, gen.plan, scripts=try_number == 1, salt=try_number)
        try:
            hook_try(gen, try_number, policy)
        except Exception as error:  # a failed try: Airflow would retry the task
            note_error(gen, error)
        finally:
            if try_number == 1:
                gen.outage_exercised = outage_reached(emu, gen.plan)
            disarm_scripts(emu)
        if gen.done_id is not None:
            break
    for endpoint in ("submit", "query", "media"):
        emu.faults.clear(endpoint)  # the next generation of this worker starts clean


def start_hook_phase(report: SoakReport, workers: list[Emulator], gens: list[Generation]) -> Callable[[], None]:
    """Run the hook generations in one thread per worker emulator; return the function that waits for them.

    Each worker runs its generations one after the other, so an emulator's scripts meet the generation
    they were planned for. The operators run meanwhile (they have emulators of their own).
    """
    policy = soak_retry_policy()
    crashes: list[BaseException] = []
    started = time.monotonic()
    finished: list[float] = []

    def work(emu: Emulator) -> None:
        try:
            for gen in gens:
                if gen.emulator is emu:
                    run_hook_generation(gen, policy)
        except BaseException as error:  # surfaced by wait(): a bug in the soak itself
            crashes.append(error)
        finally:
            finished.append(time.monotonic())

    threads = [threading.Thread(target=work, args=(emu,), name=f"soak-hook-{n}") for n, emu in enumerate(workers)]
    for thread in threads:
        thread.start()

    def wait() -> None:
        for thread in threads:
            thread.join()
        report.phase_seconds["hook"] = max(finished, default=started) - started
        if crashes:
            raise crashes[0]

    return wait


# -------------------------------------------------------------------------- operator generations


def operator_kwargs(gen: Generation, operator: str) -> dict[str, Any]:
    common = {
        "aireiter_conn_id": gen.conn_id,
        "out_task_id": gen.out_task_id,
        "output_path": f"file://{gen.directory}/",
    }
    if operator == "SeedreamV5LiteOperator":
        params = gen.plan.params
        return {**common, "prompt": params["prompt"], "aspect_ratio": params["aspect_ratio"]}
    return {**common, "model": gen.plan.model, "model_params": gen.plan.params}


def operator_dag_body(spec: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "import json as _json",
        f"SPEC = _json.loads({json.dumps(json.dumps(spec))})",
        f"common = dict(poll_interval=0.05, timeout=60, retries={OPERATOR_RETRIES}, retry_delay=timedelta(seconds=0))",
    ]
    for task_id, operator, deferrable in OPERATOR_TASKS:
        lines.append(
            f"{operator}.partial(task_id={task_id!r}, deferrable={deferrable}, **common)"
            f".expand_kwargs(SPEC[{task_id!r}])"
        )
    return "\n".join(lines) + "\n"


def count_unknown_outcomes(text: str) -> int:
    """Operator tries that failed with the unknown-outcome error: the last line of each task traceback."""
    return len(re.findall(rf"^[\w.]*\.{UNKNOWN_OUTCOME_NAME}: ", text, flags=re.MULTILINE))


def operator_done(gen: Generation) -> bool:
    return not verify_outputs(gen, gen.out_task_id, probe_only=True)


def run_operator_phase(
    report: SoakReport, gens: list[Generation], tmp_path: Path, read_output: Callable[[], str]
) -> None:
    spec: dict[str, list[dict[str, Any]]] = {task_id: [] for task_id, _, _ in OPERATOR_TASKS}
    for gen in gens:
        task_id = gen.via.split(":", 1)[1]
        operator = next(op for t, op, _ in OPERATOR_TASKS if t == task_id)
        spec[task_id].append(operator_kwargs(gen, operator))
        arm(gen.emulator, gen.plan, scripts=True, salt=1)
    body = operator_dag_body(spec)
    when = datetime(2026, 6, 1, tzinfo=timezone.utc)
    read_output()  # drop what came before
    for run in range(1, MAX_DAG_RUNS + 1):
        report.dag_runs = run
        # The same run again (same logical date): dag.test clears it, every task instance gets a new try
        # with the same out_task_id, which is the operator's real reattach path.
        run_dag("aireiter_fault_soak", body, tmp_path / "results", logical_date=when, run_after=when)
        report.operator_unknown_outcomes += count_unknown_outcomes(read_output())
        if run == 1:
            for gen in gens:
                gen.outage_exercised = outage_reached(gen.emulator, gen.plan)
                disarm_scripts(gen.emulator)
        for gen in gens:
            gen.tries = run
            if not operator_done(gen):
                gen.errors.append(f"not done after dag.test run {run}")
        if all(operator_done(gen) for gen in gens):
            break
    for gen in gens:
        if operator_done(gen):
            gen.done_id = gen.out_task_id
        for endpoint in ("submit", "query", "media"):
            gen.emulator.faults.clear(endpoint)


# ---------------------------------------------------------------------------------- verification


def verify_outputs(gen: Generation, out_id: str, *, probe_only: bool = False) -> list[str]:
    """Problems with ``out_id``'s files in the generation's folder (empty: complete, byte for byte)."""
    data = gen.emulator.task(out_id)
    if data is None or data.get("status") != "completed":
        return [f"remote task {out_id} is {None if data is None else data.get('status')}"]
    problems = []
    for position, entry in enumerate(data.get("output") or []):
        found = sorted(gen.directory.glob(f"{out_id}_{position}.*"))
        if len(found) != 1:
            problems.append(f"{out_id}_{position}: {len(found)} files on disk")
            continue
        if probe_only:
            continue
        served = requests.get(entry["url"], timeout=10)
        served.raise_for_status()
        written = found[0].read_bytes()
        if written != served.content:
            problems.append(f"{found[0].name}: {len(written)} bytes on disk, {len(served.content)} served")
    if not probe_only:
        problems += [f"partial file left: {p.name}" for p in gen.directory.glob(".*.part")]
    return problems


def refused_submits(emu: Emulator) -> collections.Counter[str]:
    """Submits the emulator refused without processing, by out_task_id.

    Requests to one emulator come one at a time, and each is logged just before its fault is drawn: a
    fault belongs to the last submit logged at or before it.
    """
    submits = [
        (r["time"], r["body"].get("out_task_id"))
        for r in emu.requests()
        if r["path"].endswith("/submit") and isinstance(r["body"], dict)
    ]
    refused: collections.Counter[str] = collections.Counter()
    for fault in emu.faults.injected():
        if fault["endpoint"] != "submit" or fault["kind"] not in REFUSED_KINDS:
            continue
        earlier = [out_id for when, out_id in submits if when <= fault["time"]]
        if earlier and isinstance(earlier[-1], str):
            refused[earlier[-1]] += 1
    return refused


def duplicates(report: SoakReport) -> list[str]:
    """Every out_task_id that was paid for twice, or sent again after a submit the service could have taken."""
    offenders = []
    for gens in report.by_emulator().values():
        emu = gens[0].emulator
        refused = refused_submits(emu)
        sent = {r["body"].get("out_task_id") for r in emu.requests() if r["path"].endswith("/submit")}
        owners = {gen.out_task_id: gen for gen in gens}
        for out_id in sorted(i for i in sent if isinstance(i, str)):
            received, created = emu.submit_request_count(out_id), emu.submit_count(out_id)
            landable = received - refused[out_id]
            if created != 1 or landable != 1:
                owner = owners.get(re.sub(r"-r\d+$", "", out_id))
                where = f"{owner.via}, scenario {owner.plan.scenario}" if owner else "unknown generation"
                offenders.append(
                    f"{out_id} ({where}): {received} submits received, {refused[out_id]} refused unprocessed, "
                    f"{created} tasks created"
                )
    return offenders


def summary(report: SoakReport, offenders: list[str], lost: list[str], wall: float) -> str:
    faults: collections.Counter[str] = collections.Counter()
    for emu in report.emulators:
        faults.update(f"{f['endpoint']}:{f['kind']}" for f in emu.faults.injected())
    hook = [g for g in report.generations if g.via == "hook"]
    errors: collections.Counter[str] = collections.Counter(e for g in hook for e in g.errors)
    exercised = sum(g.outage_exercised for g in report.generations)
    planned = sum(g.plan.hard_case for g in report.generations)
    hook_unknown = sum(g.unknown_outcomes for g in hook)
    return (
        f"aireiter soak seed={report.seed}: {len(report.generations)} generations "
        f"({len(hook)} hook, {len(report.generations) - len(hook)} operator in {report.dag_runs} dag.test runs), "
        f"hard case lost-answer+re-check-outage planned {planned} / exercised {exercised}, "
        f"duplicates {len(offenders)}, lost outputs {len(lost)}, "
        f"unknown-outcome errors raised {hook_unknown} (hook) + {report.operator_unknown_outcomes} (operator logs), "
        f"reattached {sum(g.reattached for g in report.generations)}, "
        f"hook try errors {dict(sorted(errors.items()))}, "
        f"faults injected {sum(faults.values())} {dict(sorted(faults.items()))}, wall {wall:.1f}s "
        f"({', '.join(f'{name} {seconds:.1f}s' for name, seconds in report.phase_seconds.items())})"
    )


# ---------------------------------------------------------------------------------------- the soak


@pytest.fixture
def output_reader(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    def read() -> str:
        out, err = capfd.readouterr()
        return out + err

    yield read


def test_fault_soak_never_pays_twice_and_loses_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output_reader: Callable[[], str]
) -> None:
    seed = soak_seed()
    replay = replay_command(seed)
    print(f"{SEED_ENV}={seed} (replay: {replay})")
    started = time.monotonic()
    report = SoakReport(seed)
    master = random.Random(seed)
    with contextlib.ExitStack() as stack:
        workers: list[Emulator] = []
        for n in range(HOOK_WORKERS):
            emu = new_emulator(stack, master.getrandbits(32))
            monkeypatch.setenv(f"AIRFLOW_CONN_SOAK_HOOK_{n}", conn_value(emu))
            workers.append(emu)
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_value(workers[0]))
        report.emulators.extend(workers)

        hook_gens: list[Generation] = []
        for index in range(HOOK_GENERATIONS):
            rng = random.Random(f"{seed}:hook:{index}")
            worker = index % HOOK_WORKERS
            hook_gens.append(
                Generation(
                    index=index,
                    via="hook",
                    out_task_id=f"soak-{seed % 100000}-h{index:03d}",
                    directory=tmp_path / "hook" / f"h{index:03d}",
                    plan=make_plan(rng, HOOK_SCENARIOS, lookup_first=False),
                    emulator=workers[worker],
                    conn_id=f"soak_hook_{worker}",
                )
            )

        operator_gens: list[Generation] = []
        for task_id, _, _ in OPERATOR_TASKS:
            for _ in range(OPERATOR_GENERATIONS_PER_TASK):
                index = len(operator_gens)
                rng = random.Random(f"{seed}:operator:{index}")
                emu = new_emulator(stack, rng.getrandbits(32))
                monkeypatch.setenv(f"AIRFLOW_CONN_SOAK_OP_{index}", conn_value(emu))
                report.emulators.append(emu)
                plan = make_plan(rng, OPERATOR_SCENARIOS, lookup_first=True)
                if task_id.startswith("seedream"):  # the Seedream operator has its model built in
                    plan.model, plan.params = (
                        "seedream_v5_lite",
                        {"prompt": plan.params["prompt"], "aspect_ratio": "21:9"},
                    )
                operator_gens.append(
                    Generation(
                        index=index,
                        via=f"operator:{task_id}",
                        out_task_id=f"soak-{seed % 100000}-o{index:03d}",
                        directory=tmp_path / "operator" / f"o{index:03d}",
                        plan=plan,
                        emulator=emu,
                        conn_id=f"soak_op_{index}",
                    )
                )
        report.generations = hook_gens + operator_gens

        wait_for_hook_phase = start_hook_phase(report, workers, hook_gens)
        phase_started = time.monotonic()
        try:
            run_operator_phase(report, operator_gens, tmp_path, output_reader)
        finally:
            report.phase_seconds["operator"] = time.monotonic() - phase_started
            wait_for_hook_phase()

        time.sleep(SLOW_SECONDS + 0.3)  # a slow submit still sleeping in the emulator lands now
        for emu in report.emulators:
            for endpoint in ("submit", "query", "media"):
                emu.faults.clear(endpoint)
        offenders = duplicates(report)
        lost: list[str] = []
        for gen in report.generations:
            if gen.done_id is None:
                lost.append(
                    f"{gen.out_task_id} ({gen.via}, scenario {gen.plan.scenario}): not done, errors {gen.errors}"
                )
                continue
            problems = verify_outputs(gen, gen.done_id)
            if problems:
                lost.append(f"{gen.out_task_id} ({gen.via}, scenario {gen.plan.scenario}): {'; '.join(problems)}")
        line = summary(report, offenders, lost, time.monotonic() - started)
    print(line)  # the operator phase swallowed the output before it, the seed line included
    print(f"replay with: {replay}")

    exercised = sum(g.outage_exercised for g in report.generations)
    context = f"\n{line}\nseed {seed}; replay with: {replay}"
    assert not offenders, f"{len(offenders)} out_task_id(s) sent or paid twice:\n" + "\n".join(offenders) + context
    assert not lost, f"{len(lost)} generation(s) without complete outputs:\n" + "\n".join(lost) + context
    assert len(report.generations) >= 200, f"only {len(report.generations)} generations" + context
    assert exercised > 0, "no planned 'lost answer + re-check outage' case was exercised" + context
