"""In-memory state of the emulator: tasks, credits, counters and request log.

Task status is computed lazily from timestamps, so a query is a couple of
dictionary look-ups. A heap of due times lets every request (and one
background thread) *settle* the tasks whose time is up: set their final
status, charge the credits and hand them to the callback sender. All of it
happens under one lock, held briefly.
"""

from __future__ import annotations

import heapq
import itertools
import random
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import media
from .catalog import OFFICIAL_GPT_IMAGE, Durations, ModelInfo, durations_for
from .faults import Fault
from .responses import business_error, iso_ms, ok
from .validation import ValidationError, query_key, validate_submit_body

DUPLICATE_POLICIES = ("reject", "return_existing", "create_new")
COMPLETED = "completed"
FAILED = "failed"
PROCESSING = "processing"
_ALNUM = string.ascii_letters + string.digits
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass
class Task:
    """One generation task and its timeline (times in real seconds)."""

    task_id: str
    out_task_id: str
    info: ModelInfo
    params: dict[str, Any]
    metadata: dict[str, Any] | None
    callback_url: str | None
    created_wall: float
    created_mono: float
    pending_real: float
    processing_real: float
    fail_message: str | None = None
    final_status: str | None = None
    finished_wall: float | None = None
    credits_used: int | None = None
    error: str | None = None
    media_cache: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    @property
    def due_mono(self) -> float:
        """Monotonic time at which the task ends by itself."""
        return self.created_mono + self.pending_real + self.processing_real

    def status_at(self, now_mono: float) -> str:
        """Status at ``now_mono``; an unsettled task past its due time reads as processing."""
        if self.final_status is not None:
            return self.final_status
        if now_mono - self.created_mono < self.pending_real:
            return self.info.initial_status
        return PROCESSING

    def media_names(self) -> list[str]:
        """File names of the task's outputs."""
        return [f"{self.out_task_id}_0.{media.extension(self.info.kind)}"]

    def data(self, now_mono: float, base_url: str) -> dict[str, Any]:
        """The query ``data`` object (also the callback body)."""
        status = self.status_at(now_mono)
        result: dict[str, Any] = {
            "task_id": self.task_id,
            "out_task_id": self.out_task_id,
            "status": status,
            "created_at": iso_ms(self.created_wall),
            "input": {"model": self.info.name, "params": self.params},
        }
        if self.metadata is not None:
            result["metadata"] = self.metadata
        if status == COMPLETED:
            result["completed_at"] = iso_ms(self.finished_wall or time.time())
            result["credits_used"] = self.credits_used
            result["output"] = [{"url": f"{base_url}/media/{self.task_id}/{name}"} for name in self.media_names()]
        elif status == FAILED:
            result["credits_used"] = 0
            result["error"] = self.error
        return result


FinishedHook = Callable[[Task, dict[str, Any]], None]


class EmulatorState:
    """Tasks, balance, counters and request log, guarded by one lock.

    :param credits: starting balance.
    :param speed: clock speed factor (emulator seconds per real second).
    :param durations: per-model ``(pending_s, processing_s)`` overrides.
    :param duplicate_policy: ``"reject"``, ``"return_existing"`` or ``"create_new"``.
    :param hide_task_id: answer ``task_id: ""`` in submit responses.
    :param seed: seed of the id generator.
    :param log_limit: most recent requests kept in the request log.
    """

    def __init__(
        self,
        *,
        credits: int = 10_000,
        speed: float = 1.0,
        durations: Durations | None = None,
        duplicate_policy: str = "reject",
        hide_task_id: bool = False,
        seed: int | None = 0,
        log_limit: int = 100_000,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        if duplicate_policy not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicate_policy must be one of {', '.join(DUPLICATE_POLICIES)}")
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.starting_credits = credits
        self.speed = speed
        self.durations = dict(durations) if durations else None
        self.duplicate_policy = duplicate_policy
        self.hide_task_id = hide_task_id
        self.base_url = ""
        self.on_finished: FinishedHook | None = None
        self._rng = random.Random(seed)
        self._log_limit = log_limit
        self._sequence = itertools.count()
        self._clear()

    def _clear(self) -> None:
        self.balance = self.starting_credits
        self._by_task_id: dict[str, Task] = {}
        self._by_out_id: dict[str, Task] = {}
        self._due: list[tuple[float, int, str]] = []
        self._created: Counter[str] = Counter()
        self._submit_requests: Counter[str] = Counter()
        self._queries: Counter[str] = Counter()
        self._query_total = 0
        self._log: deque[dict[str, Any]] = deque(maxlen=self._log_limit)
        self._armed_failures: deque[str] = deque()

    def reset(self) -> None:
        """Forget all tasks, counters and the log; restore the starting balance."""
        with self.lock:
            self._clear()
            self.changed.notify_all()

    # -- request bookkeeping -------------------------------------------------

    def record(self, method: str, path: str, body: Any, endpoint: str | None) -> None:
        """Append a request to the log and update the per-endpoint counters."""
        entry = {"method": method, "path": path, "body": body, "time": time.time()}
        with self.lock:
            self._log.append(entry)
            if endpoint == "query":
                self._query_total += 1
                key = self._query_out_id(body)
                if key is not None:
                    self._queries[key] += 1
            elif endpoint == "submit" and isinstance(body, dict):
                out_id = body.get("out_task_id")
                if isinstance(out_id, str):
                    self._submit_requests[out_id] += 1

    def _query_out_id(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return None
        out_id = body.get("out_task_id")
        if isinstance(out_id, str) and out_id:
            return out_id
        task = self._by_task_id.get(str(body.get("task_id")))
        return task.out_task_id if task else None

    def requests(self) -> list[dict[str, Any]]:
        """Copy of the request log (oldest first)."""
        with self.lock:
            return [dict(entry) for entry in self._log]

    def submit_count(self, out_task_id: str) -> int:
        """Tasks created for ``out_task_id``."""
        with self.lock:
            return self._created[out_task_id]

    def submit_request_count(self, out_task_id: str) -> int:
        """Submit requests received for ``out_task_id`` (created or not)."""
        with self.lock:
            return self._submit_requests[out_task_id]

    def submits(self) -> dict[str, int]:
        """``{out_task_id: tasks created}``."""
        with self.lock:
            return dict(self._created)

    def query_count(self, out_task_id: str | None = None) -> int:
        """Query requests received, in total or for one ``out_task_id``."""
        with self.lock:
            if out_task_id is None:
                return self._query_total
            return self._queries[out_task_id]

    # -- clock ---------------------------------------------------------------

    def settle(self, now_mono: float | None = None) -> float | None:
        """Finish every task whose time is up; return the next due time, if any.

        Must be called with :attr:`lock` held.
        """
        now = time.monotonic() if now_mono is None else now_mono
        while self._due and self._due[0][0] <= now:
            _, _, task_id = heapq.heappop(self._due)
            task = self._by_task_id.get(task_id)
            if task is not None and task.final_status is None:
                failed = task.fail_message is not None
                self._finish(task, FAILED if failed else COMPLETED, task.fail_message, now)
        return self._due[0][0] if self._due else None

    def _finish(self, task: Task, status: str, error: str | None, now_mono: float) -> None:
        task.final_status = status
        task.finished_wall = task.created_wall + (min(now_mono, task.due_mono) - task.created_mono)
        if status == COMPLETED:
            task.credits_used = task.info.credits
            self.balance -= task.info.credits
        else:
            task.credits_used = 0
            task.error = error or "generation failed"
        if task.callback_url and self.on_finished is not None:
            self.on_finished(task, task.data(now_mono, self.base_url))

    def complete_task(self, out_task_id: str, status: str = COMPLETED, error: str | None = None) -> None:
        """Force the current task of ``out_task_id`` to finish now.

        :raises KeyError: unknown ``out_task_id``.
        :raises ValueError: bad status, or the task has already finished.
        """
        if status not in (COMPLETED, FAILED):
            raise ValueError("status must be 'completed' or 'failed'")
        with self.lock:
            now = time.monotonic()
            self.settle(now)
            task = self._by_out_id[out_task_id]
            if task.final_status is not None:
                raise ValueError(f"task {out_task_id!r} already {task.final_status}")
            self._finish(task, status, error, now)
            self.changed.notify_all()

    # -- API operations ------------------------------------------------------

    def _new_task_id(self, model: str) -> str:
        if model == OFFICIAL_GPT_IMAGE:
            return "task_01" + "".join(self._rng.choice(_CROCKFORD) for _ in range(24))
        return "order_" + "".join(self._rng.choice(_ALNUM) for _ in range(24))

    def arm_failure(self, fault: Fault) -> None:
        """Make the next task created end ``failed`` (a ``task_failure`` fault)."""
        with self.lock:
            self._armed_failures.append(str(fault.option("message")))

    def submit(self, body: Any) -> dict[str, Any]:
        """Handle a submit body; return the JSON answer (always sent with HTTP 200)."""
        try:
            validate_submit_body(body)
        except ValidationError as exc:
            return business_error(400, str(exc))
        info = ModelInfo.lookup(body["model"])
        out_id: str = body["out_task_id"]
        with self.lock:
            now = time.monotonic()
            self.settle(now)
            existing = self._by_out_id.get(out_id)
            if existing is not None and self.duplicate_policy == "reject":
                return business_error(400, "out_task_id already exists")
            if existing is not None and self.duplicate_policy == "return_existing":
                return self._submit_answer(existing, now)
            if self.balance < info.credits:
                return business_error(433, "not enough credits")
            pending_s, processing_s = durations_for(info.name, self.durations)
            task = Task(
                task_id=self._new_task_id(info.name),
                out_task_id=out_id,
                info=info,
                params=body["params"],
                metadata=body.get("metadata"),
                callback_url=body.get("callback_url"),
                created_wall=time.time(),
                created_mono=now,
                pending_real=pending_s / self.speed,
                processing_real=processing_s / self.speed,
                fail_message=self._armed_failures.popleft() if self._armed_failures else None,
            )
            self._by_task_id[task.task_id] = task
            self._by_out_id[out_id] = task
            self._created[out_id] += 1
            heapq.heappush(self._due, (task.due_mono, next(self._sequence), task.task_id))
            self.changed.notify_all()
            return self._submit_answer(task, now, fresh=True)

    def _submit_answer(self, task: Task, now_mono: float, *, fresh: bool = False) -> dict[str, Any]:
        # A new task is always answered with its initial status (the docs: "fixed as pending"), even
        # when its durations are zero; an existing one (return_existing) with its current status.
        status = task.info.initial_status if fresh else task.status_at(now_mono)
        if task.info.name == OFFICIAL_GPT_IMAGE:
            return {"code": 200, "data": [{"status": status, "task_id": task.task_id}]}
        return ok(
            {
                "task_id": "" if self.hide_task_id else task.task_id,
                "out_task_id": task.out_task_id,
                "status": status,
                "estimated_credits": task.info.credits,
                "created_at": iso_ms(task.created_wall),
            }
        )

    def query(self, body: Any) -> dict[str, Any]:
        """Handle a query body; return the JSON answer (HTTP 200)."""
        try:
            field_name, value = query_key(body)
        except ValidationError as exc:
            return business_error(400, str(exc))
        with self.lock:
            now = time.monotonic()
            self.settle(now)
            index = self._by_task_id if field_name == "task_id" else self._by_out_id
            task = index.get(value)
            if task is None:
                return business_error(400, "api task not found")
            return ok(task.data(now, self.base_url))

    def balance_answer(self) -> dict[str, Any]:
        """The balance JSON answer (settles due tasks first)."""
        with self.lock:
            self.settle()
            return ok({"credits": self.balance})

    def task_data(self, out_task_id: str) -> dict[str, Any] | None:
        """Query ``data`` of the current task for ``out_task_id``, or ``None``."""
        with self.lock:
            now = time.monotonic()
            self.settle(now)
            task = self._by_out_id.get(out_task_id)
            return task.data(now, self.base_url) if task else None

    def media_file(self, task_id: str, name: str) -> tuple[bytes, str] | None:
        """Bytes and content type of a completed task's output, or ``None``."""
        with self.lock:
            self.settle()
            task = self._by_task_id.get(task_id)
            if task is None or task.final_status != COMPLETED or name not in task.media_names():
                return None
            cached = task.media_cache.get(name)
        if cached is None:
            cached = media.render(task.info.name, task.info.kind, task.params)
            with self.lock:
                task.media_cache[name] = cached
        return cached

    def set_balance(self, credits: int) -> None:
        """Set the current balance."""
        with self.lock:
            self.balance = credits


def redact(body: Any, secret: str) -> Any:
    """Copy of a request body fit for the log: no query strings in callback URLs, no key."""
    if isinstance(body, dict):
        return {
            key: (_strip_query(value) if key == "callback_url" else redact(value, secret))
            for key, value in body.items()
        }
    if isinstance(body, list):
        return [redact(item, secret) for item in body]
    if isinstance(body, str) and secret and secret in body:
        return body.replace(secret, "***")
    return body


def _strip_query(value: Any) -> Any:
    if isinstance(value, str) and "?" in value:
        return value.split("?", 1)[0] + "?<redacted>"
    return value
