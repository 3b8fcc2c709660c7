"""A throw-away, real Airflow 3 deployment for end-to-end tests.

``AirflowDeployment`` brings up, on the loopback interface only:

* a private PostgreSQL cluster (own data directory, own port, own unix socket
  directory) used as the metadata database,
* ``airflow db migrate``,
* four separate Airflow processes: ``api-server``, ``scheduler`` (LocalExecutor),
  ``dag-processor`` and ``triggerer``,

and tears all of it down again when the ``with`` block is left -- also when
startup fails, the body raises, the test process receives SIGTERM/SIGHUP/Ctrl-C,
or the interpreter exits.  A small "reaper" side process additionally cleans up
if the test process is killed outright (SIGKILL).

Every process started for a deployment carries a unique marker in its
environment (``AIREITER_E2E_MARKER``); teardown sweeps ``/proc`` for that
marker so orphaned grandchildren (LocalExecutor workers, task supervisors that
put themselves into their own process group, ...) are killed as well.

Only the standard library and ``requests`` are used.  The module can also be run
as a script (``python deployment.py --reaper``); that mode is the reaper.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import requests

__all__ = [
    "COMPONENTS",
    "MARKER_ENV",
    "AirflowDeployment",
    "DagRunFailed",
    "DagRunTimeout",
    "DeploymentError",
    "DeploymentFactory",
    "DeploymentStartupError",
    "descendants",
    "find_processes",
    "kill_processes",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "ensure_postgres.sh"

#: Environment variable carrying the per-deployment marker into every child process.
MARKER_ENV = "AIREITER_E2E_MARKER"
#: The long-running Airflow components, in start order.
COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Components reported by ``GET /api/v2/monitor/health`` that must be healthy.
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
_TERMINAL_RUN_STATES = frozenset({"success", "failed"})
_ENV_PREFIXES_DROPPED = ("AIRFLOW", "_AIRFLOW", "PYTEST_")


# --------------------------------------------------------------------------------------
# errors


class DeploymentError(RuntimeError):
    """Base class for every error raised by the harness."""


class DeploymentStartupError(DeploymentError):
    """The deployment could not be brought up (the message contains the relevant log tail)."""


class DagRunFailed(DeploymentError):
    """A DAG run finished in a state other than ``success``."""

    def __init__(self, message: str, *, dag_id: str, run_id: str, state: str | None) -> None:
        super().__init__(message)
        self.dag_id = dag_id
        self.run_id = run_id
        self.state = state


class DagRunTimeout(DagRunFailed, TimeoutError):
    """A DAG run did not finish within the allowed time."""


# --------------------------------------------------------------------------------------
# process helpers (stdlib only: they are also used by the reaper)


def _read_proc_file(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _proc_cwd(pid: int) -> str:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""
    return cwd.removesuffix(" (deleted)")


def _proc_stat_fields(pid: int) -> list[bytes]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    stat = _read_proc_file(pid, "stat")
    return stat.rsplit(b")", 1)[-1].split() if stat else []


def _all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def descendants(roots: Iterable[int]) -> set[int]:
    """All live descendants of ``roots`` (not including the roots themselves)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _proc_stat_fields(pid)
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def find_processes(needles: Iterable[str] = (), cwd_roots: Iterable[str] = ()) -> list[int]:
    """Pids whose environment or command line contains one of ``needles``, or whose
    working directory lies inside one of ``cwd_roots``.

    Both criteria are needed: Airflow's processes call ``setproctitle``, which overwrites
    the memory ``/proc/<pid>/environ`` and ``cmdline`` are read from, so a forked task
    runner no longer shows the marker -- but it keeps the working directory it inherited.
    The calling process and zombies are never returned.
    """
    encoded = [n.encode() for n in needles if n]
    roots = [str(r) for r in cwd_roots if str(r)]
    if not encoded and not roots:
        return []
    me = os.getpid()
    found: list[int] = []
    for pid in _all_pids():
        if pid == me or not _pid_alive(pid):
            continue
        if encoded:
            blob = _read_proc_file(pid, "environ") + b"\0" + _read_proc_file(pid, "cmdline")
            if any(n in blob for n in encoded):
                found.append(pid)
                continue
        if roots and _under(_proc_cwd(pid), roots):
            found.append(pid)
    return found


def _pid_alive(pid: int) -> bool:
    fields = _proc_stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def _kill_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)


def kill_processes(
    needles: Iterable[str] = (),
    grace: float = 5.0,
    *,
    cwd_roots: Iterable[str] = (),
    extra_pids: Iterable[int] = (),
) -> list[int]:
    """SIGTERM every matching process (see :func:`find_processes`) plus ``extra_pids`` and
    all their descendants; SIGKILL whatever is still alive after ``grace`` seconds.

    Returns the pids that were signalled.
    """
    needle_list = list(needles)
    root_list = [str(r) for r in cwd_roots]

    def collect() -> set[int]:
        matched = set(find_processes(needle_list, root_list)) | {p for p in extra_pids if _pid_alive(p)}
        return (matched | descendants(matched)) - {os.getpid()}

    pids = collect()
    if not pids:
        return []
    _kill_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.1)
    # Anything still alive or matching (including children forked meanwhile) gets SIGKILL.
    deadline = time.monotonic() + 5.0
    while True:
        remaining = {p for p in pids if _pid_alive(p)} | collect()
        if not remaining or time.monotonic() > deadline:
            break
        _kill_all(remaining, signal.SIGKILL)
        pids |= remaining
        time.sleep(0.1)
    return sorted(pids)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(..., 0) also succeeds when only zombies are left; check the members.
    for pid in _all_pids():
        fields = _proc_stat_fields(pid)
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# --------------------------------------------------------------------------------------
# PostgreSQL


def _find_pg_bindir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file():
            return cand
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def ensure_postgres_binaries() -> Path:
    """Return the directory holding ``initdb``/``pg_ctl``; install PostgreSQL via apt if needed."""
    found = _find_pg_bindir()
    if found is not None:
        return found
    proc = subprocess.run(
        ["bash", str(ENSURE_POSTGRES_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if proc.returncode != 0:
        raise DeploymentStartupError(
            f"{ENSURE_POSTGRES_SCRIPT} failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    lines = proc.stdout.strip().splitlines()
    bindir = Path(lines[-1]) if lines else None
    if bindir is None or not (bindir / "initdb").is_file():
        raise DeploymentStartupError(f"{ENSURE_POSTGRES_SCRIPT} did not report a usable bin dir: {proc.stdout!r}")
    return bindir


def _check_db_drivers() -> None:
    """Airflow needs a sync *and* an async PostgreSQL driver (SQL_ALCHEMY_CONN + its async twin)."""
    import importlib.util

    missing = [m for m in ("psycopg2", "asyncpg") if importlib.util.find_spec(m) is None]
    if missing:
        pkgs = " ".join("psycopg2-binary" if m == "psycopg2" else m for m in missing)
        raise DeploymentStartupError(
            f"the e2e harness needs {', '.join(missing)} in {sys.executable}: pip install {pkgs}"
        )


class PostgresCluster:
    """A private PostgreSQL cluster on 127.0.0.1:<free port>, owned by the ``postgres`` user."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.bindir = ensure_postgres_binaries()
        self.as_root = os.geteuid() == 0
        # Not inside the (possibly 0700) workdir: the postgres user must be able to reach it.
        # The name deliberately does not contain the marker: the marker sweep that runs
        # while Airflow shuts down must not hit PostgreSQL (it is stopped afterwards).
        # As root, prefer /tmp: $TMPDIR may be private (0700) and untraversable for postgres.
        base = "/tmp" if self.as_root and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="aireiter-e2e-pg-", dir=base))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.user = "airflow"
        self.password = secrets.token_hex(12)
        self.database = "airflow"
        self._env = dict(env)
        self._started = False

    # commands run as the cluster owner
    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        if not self.as_root:
            return list(argv)
        if shutil.which("runuser"):
            return ["runuser", "-u", "postgres", "--", *argv]
        return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]

    def _run(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_owner(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self._env,
            cwd=self.root,
        )

    def _check(self, what: str, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            extra = ""
            if self.log_path.exists():
                extra = f"\n--- {self.log_path} (tail) ---\n{_tail(self.log_path, 40)}"
            raise DeploymentStartupError(
                f"PostgreSQL: {what} failed (exit {proc.returncode}):\n"
                f"{proc.stdout.strip()}\n{proc.stderr.strip()}{extra}"
            )

    def pg_ctl_stop_command(self) -> list[str]:
        return self._as_owner(
            [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "20"]
        )

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def async_sqlalchemy_url(self) -> str:
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        if self.as_root:
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                raise DeploymentStartupError(
                    "running as root but there is no 'postgres' system user to own the cluster"
                ) from None
        self.socket_dir.mkdir()
        self.log_path.touch()
        if self.as_root:
            for path in (self.root, self.socket_dir, self.log_path):
                shutil.chown(path, "postgres", "postgres")
        pwfile = self.root / "pwfile"
        pwfile.write_text(secrets.token_hex(16) + "\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self._check(
            "initdb",
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                timeout=120,
            ),
        )
        pwfile.unlink()
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-k {self.socket_dir}",
                "-c max_connections=200",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c shared_buffers=64MB",
                "-c log_min_messages=warning",
            ]
        )
        last: subprocess.CompletedProcess[str] | None = None
        for _attempt in range(3):  # a free port may be grabbed by someone else meanwhile
            self.port = free_port()
            last = self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {self.port} {options}",
                ],
                timeout=90,
            )
            if last.returncode == 0:
                break
        assert last is not None
        self._check("pg_ctl start", last)
        self._started = True
        self._check(
            "creating the airflow role and database",
            self._run(
                [
                    str(self.bindir / "psql"),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    # Separate -c options: CREATE DATABASE cannot share a transaction.
                    "-c",
                    f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'",
                    "-c",
                    f"CREATE DATABASE {self.database} OWNER {self.user} ENCODING 'UTF8'",
                ]
            ),
        )

    def stop(self, copy_log_to: Path | None = None) -> None:
        if self.data_dir.exists() and (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                subprocess.run(
                    self.pg_ctl_stop_command(),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=40,
                    check=False,
                    env=self._env,
                    cwd=self.root,
                )
        _kill_postmaster(self.data_dir)
        kill_processes([str(self.root)], grace=2.0, cwd_roots=[str(self.root)])
        if copy_log_to is not None and self.log_path.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, copy_log_to)
        shutil.rmtree(self.root, ignore_errors=True)
        self._started = False


def _kill_postmaster(data_dir: Path) -> None:
    """SIGKILL the postmaster recorded in ``postmaster.pid`` (if it still runs)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if str(data_dir).encode() in _read_proc_file(pid, "cmdline") and _pid_alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)


# --------------------------------------------------------------------------------------
# emergency cleanup: signals, atexit, reaper

_LIVE: dict[int, AirflowDeployment] = {}
_LIVE_LOCK = threading.RLock()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _cleanup_all() -> None:
    with _LIVE_LOCK:
        deployments = list(_LIVE.values())
    for dep in deployments:
        with contextlib.suppress(Exception):
            dep.stop()


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(f"\n[airflow-e2e] received signal {signum}; tearing down Airflow deployments\n")
    _cleanup_all()
    previous = _PREVIOUS_HANDLERS.pop(signum, signal.SIG_DFL)
    signal.signal(signum, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _HANDLED_SIGNALS:
        current = signal.getsignal(sig)
        if current is _on_fatal_signal or current == signal.SIG_IGN:  # e.g. SIGHUP under nohup
            continue
        _PREVIOUS_HANDLERS[sig] = current
        signal.signal(sig, _on_fatal_signal)


def _restore_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _HANDLED_SIGNALS:
        if signal.getsignal(sig) is _on_fatal_signal and sig in _PREVIOUS_HANDLERS:
            signal.signal(sig, _PREVIOUS_HANDLERS.pop(sig))


atexit.register(_cleanup_all)


def _reaper_main() -> int:
    """Reaper process: read a JSON spec line from stdin, then wait for EOF and clean up.

    EOF means the test process died without tearing down; a single ``q`` byte means
    "normal teardown happened, nothing to do".  The spec travels over stdin so that
    neither the command line nor the environment of the reaper contain the marker
    (the marker sweeps would otherwise kill the reaper itself).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    spec = json.loads(sys.stdin.buffer.readline())
    try:
        data = sys.stdin.buffer.read(1)
    except Exception:
        data = b""
    if data == b"q":
        return 0
    stamp = time.strftime("%H:%M:%S")
    print(
        f"[reaper {stamp}] test process went away; cleaning up marker={spec['marker']} pg_root={spec.get('pg_root')}",
        flush=True,
    )
    killed = kill_processes([spec["marker"]], grace=10.0, cwd_roots=[spec["proc_cwd"]])
    print(f"[reaper] signalled {len(killed)} marked processes", flush=True)
    if spec.get("pg_stop"):
        with contextlib.suppress(Exception):
            subprocess.run(spec["pg_stop"], stdin=subprocess.DEVNULL, capture_output=True, timeout=40, check=False)
        _kill_postmaster(Path(spec["pg_data"]))
    kill_processes([spec["marker"], spec["pg_root"]], grace=2.0, cwd_roots=[spec["proc_cwd"], spec["pg_root"]])
    for path in spec.get("remove", []):
        shutil.rmtree(path, ignore_errors=True)
    print("[reaper] done", flush=True)
    return 0


# --------------------------------------------------------------------------------------
# the deployment


class AirflowDeployment:
    """A real Airflow deployment (PostgreSQL + api-server + scheduler + dag-processor + triggerer).

    Use as a context manager::

        with AirflowDeployment(dags_folder=path, env={"AIRFLOW_CONN_X": "..."}) as dep:
            run_id = dep.trigger("my_dag", conf={"a": 1})
            assert dep.wait_for_run("my_dag", run_id) == "success"

    :param dags_folder: directory with the DAG files (becomes ``[core] dags_folder``).
    :param env: extra environment for *all* Airflow processes (wins over harness settings).
    :param workdir: where AIRFLOW_HOME and the logs live.  A fresh temporary directory is
        created (and removed at teardown, unless ``keep_workdir``) when not given.  The
        ``AIREITER_E2E_ROOT`` environment variable selects the parent of temporary workdirs.
    :param plugins_folder: ``[core] plugins_folder`` (an empty folder in the workdir by default).
    :param startup_timeout: seconds to wait for all components to become healthy.
    :param stop_timeout: seconds to wait after SIGTERM before SIGKILLing a component.
    :param extra_pythonpath: prepended to ``PYTHONPATH`` (the repository root always is).
    :param keep_workdir: keep a temporary workdir after teardown (default: only when the
        ``with`` body raised, or ``AIREITER_E2E_KEEP=1``).
    :param component_commands: override the argv of single components (used by tests that
        simulate a broken component); keys are names from ``COMPONENTS``.
    """

    def __init__(
        self,
        dags_folder: Path | str,
        env: Mapping[str, str] | None = None,
        workdir: Path | str | None = None,
        plugins_folder: Path | str | None = None,
        *,
        startup_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        extra_pythonpath: Sequence[Path | str] = (),
        keep_workdir: bool | None = None,
        component_commands: Mapping[str, Sequence[str]] | None = None,
        api_port: int | None = None,
    ) -> None:
        self.dags_folder = Path(dags_folder).resolve()
        if not self.dags_folder.is_dir():
            raise ValueError(f"dags_folder {self.dags_folder} is not a directory")
        self.user_env = dict(env or {})
        self._requested_workdir = Path(workdir).resolve() if workdir is not None else None
        self._requested_plugins = Path(plugins_folder).resolve() if plugins_folder is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_pythonpath = [str(Path(p).resolve()) for p in extra_pythonpath]
        if keep_workdir is None and os.environ.get("AIREITER_E2E_KEEP", "") not in ("", "0", "false"):
            keep_workdir = True
        self.keep_workdir = keep_workdir
        self.component_commands = {k: list(v) for k, v in (component_commands or {}).items()}
        unknown = set(self.component_commands) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components in component_commands: {sorted(unknown)}")

        self.marker = uuid.uuid4().hex[:16]
        self.airflow_cmd: list[str] = [sys.executable, "-m", "airflow"]
        self._requested_api_port = api_port
        self.api_port = 0
        self.env: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

        self._workdir: Path | None = None
        self._owns_workdir = False
        self._pg: PostgresCluster | None = None
        self._log_files: list[IO[bytes]] = []
        self._reaper: subprocess.Popen[bytes] | None = None
        self._session = requests.Session()
        self._session.trust_env = False  # never route loopback traffic through a proxy
        self._token: str | None = None
        self._state = "new"  # new -> starting -> running -> stopped
        self._stop_lock = threading.RLock()
        self._failed = False

    # ------------------------------------------------------------------ properties
    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise DeploymentError("deployment has not been started")
        return self._workdir

    @property
    def airflow_home(self) -> Path:
        return self.workdir / "airflow-home"

    @property
    def logs_dir(self) -> Path:
        """Directory with one ``<component>.log`` per process (plus db-migrate/postgres/reaper)."""
        return self.workdir / "logs"

    @property
    def proc_cwd(self) -> Path:
        """Working directory of every Airflow process; teardown sweeps processes by it."""
        return self.workdir / "proc-cwd"

    @property
    def task_logs_dir(self) -> Path:
        return self.airflow_home / "logs"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def postgres(self) -> PostgresCluster | None:
        """The private PostgreSQL cluster (``root``, ``port``, ``data_dir``, ...) once created."""
        return self._pg

    @property
    def database_url(self) -> str:
        if self._pg is None:
            raise DeploymentError("deployment has not been started")
        return self._pg.sqlalchemy_url

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> AirflowDeployment:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._failed = True
        self.stop()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._state != "new":
            raise DeploymentError(f"cannot start a deployment in state {self._state!r}")
        self._state = "starting"
        with _LIVE_LOCK:
            _LIVE[id(self)] = self
            _install_signal_handlers()
        t0 = time.monotonic()
        try:
            _check_db_drivers()
            self._prepare_workdir()
            self._pg = PostgresCluster(self._pg_env())
            self._start_reaper()
            self._pg.start()
            self.timings["postgres"] = time.monotonic() - t0
            self.api_port = self._requested_api_port or free_port()
            self.env = self._build_env()
            t1 = time.monotonic()
            self._db_migrate()
            self.timings["db_migrate"] = time.monotonic() - t1
            t2 = time.monotonic()
            for name in COMPONENTS:
                self._spawn(name)
            # The budget covers the Airflow components only (not a first-time apt install).
            self._wait_until_healthy(deadline=t2 + self.startup_timeout)
            self.timings["components"] = time.monotonic() - t2
            self.timings["startup_total"] = time.monotonic() - t0
            self._state = "running"
            sys.stderr.write(
                f"[airflow-e2e] deployment up in {self.timings['startup_total']:.1f}s at {self.api_url} "
                f"(postgres {self.timings['postgres']:.1f}s, migrate {self.timings['db_migrate']:.1f}s, "
                f"components {self.timings['components']:.1f}s); logs: {self.logs_dir}\n"
            )
        except BaseException:
            self._failed = True
            self.stop()
            raise

    def _prepare_workdir(self) -> None:
        if self._requested_workdir is not None:
            self._workdir = self._requested_workdir
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            parent: Path | None = None
            if os.environ.get("AIREITER_E2E_ROOT"):
                parent = Path(os.environ["AIREITER_E2E_ROOT"]).resolve()
                parent.mkdir(parents=True, exist_ok=True)
            self._workdir = Path(tempfile.mkdtemp(prefix=f"aireiter-e2e-{self.marker}-", dir=parent)).resolve()
            self._owns_workdir = True
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.proc_cwd.mkdir(exist_ok=True)
        if self._requested_plugins is None:
            (self.airflow_home / "plugins").mkdir(exist_ok=True)

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_DROPPED)}
        env["LC_ALL"] = "C"
        env.pop("PGDATA", None)
        return env

    def _start_reaper(self) -> None:
        assert self._pg is not None
        remove = [str(self._pg.root)]
        if self._owns_workdir and not self.keep_workdir:
            remove.append(str(self.workdir))
        spec = {
            "marker": self.marker,
            "pg_stop": self._pg.pg_ctl_stop_command(),
            "pg_data": str(self._pg.data_dir),
            "pg_root": str(self._pg.root),
            "proc_cwd": str(self.proc_cwd),
            "remove": remove,
        }
        # The reaper must not carry the marker in its environment: it would kill itself.
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_DROPPED)}
        log = open(self.logs_dir / "reaper.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log_files.append(log)
        self._reaper = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--reaper"],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,
        )
        assert self._reaper.stdin is not None
        self._reaper.stdin.write(json.dumps(spec).encode() + b"\n")
        self._reaper.stdin.flush()

    def _build_env(self) -> dict[str, str]:
        assert self._pg is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_DROPPED)}
        pythonpath = [*self.extra_pythonpath, str(REPO_ROOT)]
        if env.get("PYTHONPATH"):
            pythonpath.append(env["PYTHONPATH"])
        no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", env.get("NO_PROXY") or env.get("no_proxy")]))
        plugins = self._requested_plugins or (self.airflow_home / "plugins")
        env.update(
            {
                MARKER_ENV: self.marker,
                "PYTHONPATH": os.pathsep.join(pythonpath),
                "PYTHONUNBUFFERED": "1",
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._pg.sqlalchemy_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self._pg.async_sqlalchemy_url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.airflow_home / "simple_auth_manager_passwords.json.generated"
                ),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
                "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs_dir),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
            }
        )
        env.update(self.user_env)
        return env

    def _command(self, name: str) -> list[str]:
        if name in self.component_commands:
            return self.component_commands[name]
        host_port = ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
        return {
            "api-server": [*self.airflow_cmd, "api-server", *host_port],
            # serve-logs would listen on 0.0.0.0; all logs are local files here anyway.
            "scheduler": [*self.airflow_cmd, "scheduler", "--skip-serve-logs"],
            "dag-processor": [*self.airflow_cmd, "dag-processor"],
            "triggerer": [*self.airflow_cmd, "triggerer", "--skip-serve-logs"],
        }[name]

    def _open_log(self, name: str) -> IO[bytes]:
        fh = open(self.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log_files.append(fh)
        return fh

    def _db_migrate(self) -> None:
        log = self.logs_dir / "db-migrate.log"
        with open(log, "ab") as fh:
            try:
                proc = subprocess.run(
                    [*self.airflow_cmd, "db", "migrate"],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.proc_cwd,
                    timeout=max(30.0, self.startup_timeout),
                    check=False,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                raise DeploymentStartupError(
                    f"`airflow db migrate` timed out; log {log}:\n{_indent(_tail(log))}"
                ) from None
        if proc.returncode != 0:
            raise DeploymentStartupError(
                f"`airflow db migrate` failed with exit code {proc.returncode}; log {log}:\n{_indent(_tail(log))}"
            )

    def _spawn(self, name: str) -> None:
        log = self._open_log(name)
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        log.flush()
        self.processes[name] = subprocess.Popen(
            self._command(name),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.proc_cwd,
            start_new_session=True,
        )

    def _check_processes_alive(self, phase: str) -> None:
        for name, proc in self.processes.items():
            rc = proc.poll()
            if rc is not None:
                raise DeploymentStartupError(
                    f"Airflow {name} exited with code {rc} {phase}; "
                    f"log {self.logs_dir / (name + '.log')}:\n{_indent(self.log_tail(name))}"
                )

    def _wait_until_healthy(self, deadline: float) -> None:
        last_health: Any = None
        last_error = "no response yet"
        while True:
            self._check_processes_alive("during startup")
            try:
                resp = self._session.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
                if resp.status_code == 200:
                    last_health = resp.json()
                    unhealthy = [
                        comp
                        for comp, key in _HEALTH_KEYS.items()
                        if (last_health.get(key) or {}).get("status") != "healthy"
                    ]
                    if last_health.get("metadatabase", {}).get("status") != "healthy":
                        unhealthy.append("metadatabase")
                    if not unhealthy:
                        break
                    last_error = f"not healthy yet: {', '.join(unhealthy)}"
                else:
                    last_error = f"HTTP {resp.status_code}: {resp.text[:300]}"
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                suspects = [c for c in COMPONENTS if c == "api-server" or c in last_error] or list(COMPONENTS)
                tails = "\n".join(
                    f"--- {self.logs_dir / (c + '.log')} (tail) ---\n{_indent(self.log_tail(c, 40))}" for c in suspects
                )
                raise DeploymentStartupError(
                    f"Airflow deployment not healthy after {self.startup_timeout:.0f}s ({last_error}); "
                    f"last health: {json.dumps(last_health)}\n{tails}"
                )
            time.sleep(0.5)
        self._fetch_token()

    def stop(self) -> None:
        """Tear everything down.  Idempotent, safe to call from signal handlers and atexit."""
        with self._stop_lock:
            if self._state in ("stopped", "new"):
                return
            self._state = "stopping"
            try:
                self._stop_components()
                if self._pg is not None:
                    log_copy = self.logs_dir / "postgres.log" if self._workdir else None
                    self._pg.stop(copy_log_to=log_copy)
                kill_processes([self.marker], grace=2.0, cwd_roots=[str(self.proc_cwd)])
            finally:
                self._stop_reaper()
                for fh in self._log_files:
                    with contextlib.suppress(Exception):
                        fh.close()
                self._log_files.clear()
                with contextlib.suppress(Exception):
                    self._session.close()
                self._state = "stopped"
                with _LIVE_LOCK:
                    _LIVE.pop(id(self), None)
                    if not _LIVE:
                        _restore_signal_handlers()
                self._cleanup_workdir()

    def _stop_components(self) -> None:
        procs = dict(self.processes)
        pgids = [p.pid for p in procs.values()]
        # Snapshot the process tree first: task runners put themselves into their own
        # process group and would be orphaned (escaping the group kill) once their
        # supervisor -- a LocalExecutor worker in the scheduler's group -- is gone.
        tree = descendants(pgids)
        # Drop our keep-alive connection, or uvicorn's graceful shutdown waits for it.
        with contextlib.suppress(Exception):
            self._session.close()
        for pgid in pgids:
            _signal_group(pgid, signal.SIGTERM)
        _kill_all(tree, signal.SIGTERM)
        started = time.monotonic()
        deadline = started + self.stop_timeout
        resent = tree_killed = False

        def alive() -> bool:
            for proc in procs.values():
                proc.poll()
            return any(_group_alive(g) for g in pgids) or any(_pid_alive(p) for p in tree)

        while time.monotonic() < deadline and alive():
            if not tree_killed and time.monotonic() - started > 2.0:
                # Running task runners ignore SIGTERM while their task is busy, and the
                # scheduler waits for them; nothing of value is lost by killing them.
                _kill_all(tree - set(pgids), signal.SIGKILL)
                tree_killed = True
            if not resent and time.monotonic() - started > 3.0:
                # A second SIGTERM makes the scheduler stop waiting for running tasks.
                for pgid in pgids:
                    _signal_group(pgid, signal.SIGTERM)
                resent = True
            time.sleep(0.1)
        for pgid in pgids:
            if _group_alive(pgid):
                _signal_group(pgid, signal.SIGKILL)
        _kill_all(tree, signal.SIGKILL)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        # Whatever else carries the marker or runs in our working directory.
        kill_processes([self.marker], grace=3.0, cwd_roots=[str(self.proc_cwd)], extra_pids=tree)

    def _stop_reaper(self) -> None:
        reaper = self._reaper
        if reaper is None:
            return
        self._reaper = None
        try:
            assert reaper.stdin is not None
            reaper.stdin.write(b"q")
            reaper.stdin.close()
            reaper.wait(timeout=10)
        except Exception:
            with contextlib.suppress(Exception):
                reaper.kill()
                reaper.wait(timeout=5)

    def mark_failed(self) -> None:
        """Keep a temporary workdir after teardown (unless ``keep_workdir=False`` was given)."""
        self._failed = True

    def _cleanup_workdir(self) -> None:
        if not self._owns_workdir or self._workdir is None:
            return
        keep = self.keep_workdir if self.keep_workdir is not None else self._failed
        if keep:
            sys.stderr.write(f"[airflow-e2e] keeping workdir {self._workdir} for inspection\n")
            return
        shutil.rmtree(self._workdir, ignore_errors=True)

    def leftover_processes(self) -> list[int]:
        """Pids of processes still carrying this deployment's marker, or mentioning / running
        inside its workdir or PostgreSQL directory."""
        needles = [self.marker]
        roots: list[str] = []
        if self._workdir is not None:
            needles.append(str(self._workdir))
            roots.append(str(self._workdir))
        if self._pg is not None:
            needles.append(str(self._pg.root))
            roots.append(str(self._pg.root))
        return find_processes(needles, roots)

    # ------------------------------------------------------------------ logs of processes
    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def process_log(self, component: str) -> str:
        """Whole stdout/stderr log of a component (``api-server``, ``scheduler``, ...)."""
        try:
            return self.log_path(component).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, component: str, lines: int = 60) -> str:
        return _tail(self.log_path(component), lines)

    def run_airflow_cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` against this deployment (same environment as the components)."""
        if self._state != "running":
            raise DeploymentError("deployment is not running")
        return subprocess.run(
            [*self.airflow_cmd, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.proc_cwd,
            timeout=timeout,
            check=False,
        )

    # ------------------------------------------------------------------ REST API
    def admin_password(self) -> str:
        """The password Airflow's simple auth manager generated for ``admin`` (deployments without all-admins)."""
        generated = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        return str(json.loads(generated.read_text())["admin"])

    def login_token(self, username: str, password: str) -> str:
        """A JWT for ``username`` from ``POST /auth/token``, as the UI's login form gets it."""
        resp = self._session.post(
            f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if resp.status_code not in (200, 201):
            raise DeploymentError(f"could not log in as {username}: HTTP {resp.status_code} {resp.text[:500]}")
        return str(resp.json()["access_token"])

    def _fetch_token(self) -> str:
        if self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True").lower() == "false":
            self._token = self.login_token("admin", self.admin_password())
            return self._token
        resp = self._session.get(f"{self.api_url}/auth/token", timeout=30)
        if resp.status_code not in (200, 201):
            raise DeploymentError(f"could not obtain an API token: HTTP {resp.status_code} {resp.text[:500]}")
        self._token = str(resp.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Authenticated request against the api-server; ``path`` is relative to ``api_url``.

        Does not raise on HTTP errors (check ``status_code`` / use :meth:`api`).
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.api_url}/{path.lstrip('/')}"
        kwargs.setdefault("timeout", 60)
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            if self._token is None:
                self._fetch_token()
            headers["Authorization"] = f"Bearer {self._token}"
            resp = self._session.request(method, url, headers=headers, **kwargs)
            if resp.status_code == 401 and attempt == 0:
                self._token = None
                continue
            return resp
        return resp

    def api(self, method: str, path: str, *, ok: Sequence[int] = (200, 201, 204), **kwargs: Any) -> Any:
        """Like :meth:`request` but raises ``DeploymentError`` on unexpected status; returns JSON."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code not in ok:
            raise DeploymentError(f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:2000]}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def health(self) -> dict[str, Any]:
        return dict(self.api("GET", "/api/v2/monitor/health"))

    def import_errors(self) -> list[dict[str, Any]]:
        data = self.api("GET", "/api/v2/importErrors", params={"limit": 100})
        return list(data.get("import_errors", []))

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        resp = self.request("GET", f"/api/v2/dags/{dag_id}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise DeploymentError(f"GET dag {dag_id} -> HTTP {resp.status_code}: {resp.text[:1000]}")
        return dict(resp.json())

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` and the API knows it."""
        deadline = time.monotonic() + timeout
        while True:
            self._ensure_running()
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() > deadline:
                errors = self.import_errors()
                details = "\n".join(
                    f"--- import error in {e.get('filename')} ---\n{_indent(str(e.get('stack_trace')))}" for e in errors
                )
                raise DeploymentError(
                    f"DAG {dag_id!r} did not appear within {timeout:.0f}s "
                    f"(dags_folder={self.dags_folder}).\n{details or 'No import errors were reported.'}\n"
                    f"--- dag-processor log (tail) ---\n{_indent(self.log_tail('dag-processor', 40))}"
                )
            time.sleep(1.0)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        parse_timeout: float = 120.0,
        logical_date: str | None = None,
    ) -> str:
        """Wait for the DAG to be parsed, unpause it, trigger a run via REST API v2; return the run id.

        ``logical_date`` (ISO 8601) is sent as given; ``None`` triggers a run without one, as the API allows.
        """
        self.wait_for_dag(dag_id, timeout=parse_timeout)
        self.set_paused(dag_id, False)
        body: dict[str, Any] = {"logical_date": logical_date, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        # Right after the first parse the serialized DAG may lag behind the DagModel row.
        deadline = time.monotonic() + 30
        while True:
            resp = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            if resp.status_code in (200, 201):
                return str(resp.json()["dag_run_id"])
            if resp.status_code != 404 or time.monotonic() > deadline:
                raise DeploymentError(f"triggering {dag_id} failed: HTTP {resp.status_code}: {resp.text[:2000]}")
            time.sleep(1.0)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 300.0,
        *,
        raise_on_failure: bool = True,
        poll_interval: float = 1.0,
    ) -> str:
        """Wait until the run is ``success`` or ``failed`` and return that state.

        With ``raise_on_failure`` (default) a non-success end state raises :class:`DagRunFailed`
        whose message contains every task's state and log.  A timeout always raises
        :class:`DagRunTimeout` with the same diagnostics.
        """
        deadline = time.monotonic() + timeout
        state: str | None = None
        while True:
            self._ensure_running()
            state = self.dag_run(dag_id, run_id).get("state")
            if state in _TERMINAL_RUN_STATES:
                break
            if time.monotonic() > deadline:
                raise DagRunTimeout(
                    f"DAG run {dag_id}/{run_id} still {state!r} after {timeout:.0f}s\n"
                    + self.run_diagnostics(dag_id, run_id),
                    dag_id=dag_id,
                    run_id=run_id,
                    state=state,
                )
            time.sleep(poll_interval)
        assert state is not None
        if state != "success" and raise_on_failure:
            raise DagRunFailed(
                f"DAG run {dag_id}/{run_id} ended in state {state!r}\n" + self.run_diagnostics(dag_id, run_id),
                dag_id=dag_id,
                run_id=run_id,
                state=state,
            )
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """All task instances (including mapped ones) of a run, as returned by the REST API."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            data = self.api(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": offset},
            )
            batch = list(data.get("task_instances", []))
            out.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(data.get("total_entries", 0)):
                return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log for one try, rendered as plain text lines."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        params: dict[str, Any] = {"map_index": map_index, "full_content": "true"}
        lines: list[str] = []
        for _page in range(50):
            data = self.api("GET", path, params=params, headers={"Accept": "application/json"})
            content = data.get("content") or []
            lines.extend(_render_log_entry(entry) for entry in content)
            token = data.get("continuation_token")
            if not token or not content:
                break
            params["token"] = token
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        data = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": "true", "stringify": "false"},
        )
        return data.get("value")

    def run_diagnostics(self, dag_id: str, run_id: str) -> str:
        """Human-readable dump of a run: task states, every task log, component log tails."""
        parts: list[str] = []
        try:
            tis = self.task_instances(dag_id, run_id)
        except Exception as exc:
            return f"(could not list task instances: {exc})"
        parts.append("task states:")
        for ti in tis:
            suffix = f"[{ti['map_index']}]" if ti.get("map_index", -1) != -1 else ""
            parts.append(f"  {ti['task_id']}{suffix}: {ti.get('state')} (try {ti.get('try_number')})")
        for ti in tis:
            tries = max(1, int(ti.get("try_number") or 1)) if ti.get("state") else 0
            for try_number in range(1, tries + 1):
                suffix = f"[{ti['map_index']}]" if ti.get("map_index", -1) != -1 else ""
                try:
                    text = self.task_log(dag_id, run_id, ti["task_id"], try_number, ti.get("map_index", -1))
                except Exception as exc:
                    text = f"(could not fetch log: {exc})"
                parts.append(f"--- log {ti['task_id']}{suffix} try {try_number} ---\n{_indent(text)}")
        for comp in ("scheduler", "triggerer"):
            parts.append(f"--- {comp} log (tail) ---\n{_indent(self.log_tail(comp, 30))}")
        return "\n".join(parts)

    def _ensure_running(self) -> None:
        if self._state != "running":
            raise DeploymentError(f"deployment is {self._state}")
        for name, proc in self.processes.items():
            rc = proc.poll()
            if rc is not None:
                raise DeploymentError(
                    f"Airflow {name} died (exit code {rc}); log tail:\n{_indent(self.log_tail(name))}"
                )


#: Signature of the ``airflow_deployment_factory`` fixture (tests/e2e/conftest.py).
DeploymentFactory = Callable[..., AirflowDeployment]


# Context keys repeated on every task-log line; dropped from the rendered text.
_REDUNDANT_LOG_KEYS = frozenset(
    {"dag_id", "task_id", "run_id", "map_index", "try_number", "ti_id", "filename", "lineno", "logger_name"}
)


def _render_exception(details: Any) -> list[str]:
    """Render structlog's ``error_detail`` (a list of exception dicts) like a traceback."""
    if not isinstance(details, list):
        return [f"error_detail={details!r}"]
    out: list[str] = []
    for exc in details:
        if not isinstance(exc, dict):
            out.append(str(exc))
            continue
        out.append("Traceback (most recent call last):")
        for frame in exc.get("frames") or []:
            if isinstance(frame, dict):
                out.append(f'  File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}')
        out.append(f"{exc.get('exc_type')}: {exc.get('exc_value')}")
    return out


def _render_log_entry(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    ts = entry.get("timestamp") or ""
    level = entry.get("level") or ""
    logger = entry.get("logger") or ""
    event = entry.get("event", "")
    skip = {"timestamp", "level", "logger", "event", "error_detail", *_REDUNDANT_LOG_KEYS}
    extras = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}" for k, v in entry.items() if k not in skip
    )
    head = " ".join(x for x in (str(ts), f"[{level}]" if level else "", f"{logger}:" if logger else "") if x)
    line = " ".join(x for x in (head, str(event), extras) if x)
    if "error_detail" in entry:
        line = "\n".join([line, *_render_exception(entry["error_detail"])])
    return line


def _main(argv: Sequence[str]) -> int:
    if list(argv) == ["--reaper"]:
        return _reaper_main()
    sys.stderr.write("usage: deployment.py --reaper  (spec as one JSON line on stdin)\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
