"""The :class:`Emulator`: start, inspect, steer and stop a local AIReiter stand-in."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

from .catalog import Durations
from .faults import FaultInjector
from .handler import EmulatorRequestHandler
from .notify import CallbackSender
from .server import EmulatorHTTPServer, ServerContext
from .state import EmulatorState

log = logging.getLogger("airflow_provider_aireiter.testing.emulator")

#: API key the emulator accepts unless told otherwise.
DEFAULT_API_KEY = "emulator-key"
#: Environment variable Airflow reads the default AIReiter connection from.
CONN_ENV_VAR = "AIRFLOW_CONN_AIREITER_DEFAULT"


class Emulator:
    """A local, real-HTTP stand-in for the AIReiter API.

    :param api_key: the only key accepted as ``Authorization: Bearer <key>``.
    :param speed: clock speed factor; 60 makes a 60 s task finish in 1 s.
    :param host: interface to bind (keep the default, ``127.0.0.1``).
    :param port: port to bind; 0 picks a free one.
    :param credits: starting balance.
    :param durations: per-model ``(pending_s, processing_s)`` in emulator
        seconds; key ``"*"`` is the default for models not named.
    :param duplicate_policy: what a reused ``out_task_id`` does:
        ``"reject"`` (business 400), ``"return_existing"`` or ``"create_new"``.
    :param seed: seed for generated task ids.
    :param hide_task_id: answer ``task_id: ""`` on submit, as the real
        service sometimes does.
    :param faults: initial faults, ``{endpoint: [kind | Fault | None, ...]}``
        for scripts or ``{endpoint: {"kind": ..., "rate": p, "seed": s}}``.
    :param log_limit: most recent requests kept in the request log.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Emulator(speed=100) as emu:
            os.environ["AIRFLOW_CONN_AIREITER_DEFAULT"] = emu.conn_json
            ...
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        credits: int = 10_000,
        durations: Durations | None = None,
        duplicate_policy: str = "reject",
        seed: int | None = 0,
        hide_task_id: bool = False,
        faults: Mapping[str, Any] | None = None,
        log_limit: int = 100_000,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._api_key = api_key
        self._host = host
        self._requested_port = port
        self.state = EmulatorState(
            credits=credits,
            speed=speed,
            durations=durations,
            duplicate_policy=duplicate_policy,
            hide_task_id=hide_task_id,
            seed=seed,
            log_limit=log_limit,
        )
        #: The fault injector (see :class:`~.faults.FaultInjector`).
        self.faults = FaultInjector()
        self._initial_faults = dict(faults) if faults else {}
        self.faults.configure_many(self._initial_faults)
        self._callbacks = CallbackSender(self.faults, speed)
        self.state.on_finished = lambda task, data: self._callbacks.enqueue(
            task.callback_url or "", task.out_task_id, data
        )
        self._server: EmulatorHTTPServer | None = None
        self._context: ServerContext | None = None
        self._serve_thread: threading.Thread | None = None
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = False

    def __repr__(self) -> str:
        where = self.base_url if self._server else "not started"
        return f"<Emulator {where} speed={self.state.speed}>"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the port and start serving in background threads."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        context = ServerContext(
            state=self.state,
            faults=self.faults,
            callbacks=self._callbacks,
            api_key=self._api_key,
            reset=self.reset,
        )
        self._server = EmulatorHTTPServer((self._host, self._requested_port), EmulatorRequestHandler, context)
        self._context = context
        self.state.base_url = self.base_url
        self._callbacks.start()
        self._clock_stop = False
        self._clock_thread = threading.Thread(target=self._clock_loop, name="aireiter-emulator-clock", daemon=True)
        self._clock_thread.start()
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="aireiter-emulator-server",
            daemon=True,
        )
        self._serve_thread.start()
        log.info("AIReiter emulator listening on %s (speed %sx)", self.base_url, self.state.speed)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join all threads."""
        server, context = self._server, self._context
        if server is None or context is None:
            return
        context.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._serve_thread is not None:
            self._serve_thread.join()
        with self.state.lock:
            self._clock_stop = True
            self.state.changed.notify_all()
        if self._clock_thread is not None:
            self._clock_thread.join()
        self._callbacks.stop()
        self._server = None
        self._context = None
        self._serve_thread = None
        self._clock_thread = None
        log.info("AIReiter emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def _clock_loop(self) -> None:
        """Finish due tasks on time (which also fires their callbacks)."""
        state = self.state
        with state.lock:
            while not self._clock_stop:
                next_due = state.settle()
                timeout = 60.0 if next_due is None else min(60.0, max(0.0, next_due - time.monotonic()))
                state.changed.wait(timeout)

    # -- connection details ----------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (after :meth:`start`)."""
        host = self._host if self._host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The accepted API key."""
        return self._api_key

    @property
    def conn_json(self) -> str:
        """JSON value for ``AIRFLOW_CONN_AIREITER_DEFAULT``."""
        return json.dumps({"conn_type": "aireiter", "host": self.base_url, "password": self._api_key})

    @property
    def conn_uri(self) -> str:
        """URI form ``aireiter://:KEY@<percent-encoded base URL>``."""
        return f"aireiter://:{quote(self._api_key, safe='')}@{quote(self.base_url, safe='')}"

    @property
    def speed(self) -> float:
        """Clock speed factor."""
        return self.state.speed

    # -- inspection and control -----------------------------------------------

    def submit_count(self, out_task_id: str) -> int:
        """Number of tasks created for ``out_task_id``."""
        return self.state.submit_count(out_task_id)

    def submit_request_count(self, out_task_id: str) -> int:
        """Number of submit requests received for ``out_task_id``, created or not."""
        return self.state.submit_request_count(out_task_id)

    def submits(self) -> dict[str, int]:
        """``{out_task_id: tasks created}``."""
        return self.state.submits()

    def requests(self) -> list[dict[str, Any]]:
        """Request log: dicts with ``method``, ``path``, ``body``, ``time`` (no headers)."""
        return self.state.requests()

    def query_count(self, out_task_id: str | None = None) -> int:
        """Number of ``/query`` requests, in total or for one ``out_task_id``."""
        return self.state.query_count(out_task_id)

    def callbacks(self) -> list[dict[str, Any]]:
        """Callback delivery attempts (``path`` only, never the query string)."""
        return self._callbacks.records()

    def task(self, out_task_id: str) -> dict[str, Any] | None:
        """Current query ``data`` of the task for ``out_task_id``, or ``None``."""
        return self.state.task_data(out_task_id)

    def complete_task(self, out_task_id: str, status: str = "completed", error: str | None = None) -> None:
        """Finish the task for ``out_task_id`` now (fires its callback).

        :raises KeyError: unknown ``out_task_id``.
        :raises ValueError: bad status or task already finished.
        """
        self.state.complete_task(out_task_id, status, error)

    @property
    def balance(self) -> int:
        """Current credits."""
        with self.state.lock:
            self.state.settle()
            return self.state.balance

    @balance.setter
    def balance(self, credits: int) -> None:
        self.state.set_balance(credits)

    def reset(self) -> None:
        """Clear tasks, request log, callbacks and faults; restore the credits."""
        self.faults.clear()
        self._callbacks.clear()
        self.state.reset()
