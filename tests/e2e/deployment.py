"""A throw-away, real Airflow 3 deployment for the end-to-end tests.

``AirflowDeployment`` brings up, on 127.0.0.1 only: a private PostgreSQL cluster (own data directory
and port) as the metadata database, ``airflow db migrate``, and four separate Airflow processes
(``api-server``, ``scheduler`` with the LocalExecutor, ``dag-processor``, ``triggerer``). ``stop()``
takes all of it down again; it also runs at interpreter exit and on SIGTERM.

With a :class:`Topology` it brings up the distributed setup instead: several schedulers, triggerers
and api-servers on the one database, and with ``celery_workers`` the CeleryExecutor, its workers and
a private Redis (Debian's ``redis-server``, without persistence) as the broker. Components of which
there are several are named ``scheduler-1``, ``scheduler-2``...; :meth:`AirflowDeployment.kill` and
:meth:`AirflowDeployment.restart` are the faults.

Teardown finds every process of a deployment by a marker in its environment (``AIREITER_E2E_MARKER``),
which task runners inherit even when they move to a process group of their own.
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
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "ensure_postgres.sh"
#: Environment variable carrying the per-deployment marker into every child process.
MARKER_ENV = "AIREITER_E2E_MARKER"
#: How ``GET /api/v2/monitor/health`` names the components that must be healthy.
_HEALTH_KEYS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
_ENV_PREFIXES_DROPPED = ("AIRFLOW", "_AIRFLOW", "PYTEST_")


class DeploymentError(RuntimeError):
    """Base class for every error raised by the harness."""


class DeploymentStartupError(DeploymentError):
    """The deployment did not come up; the message carries the relevant log tails."""


class DagRunFailed(DeploymentError):
    """A DAG run ended in a state other than ``success``; the message has every task's state and log."""

    def __init__(self, message: str, *, dag_id: str, run_id: str, state: str | None) -> None:
        super().__init__(message)
        self.dag_id, self.run_id, self.state = dag_id, run_id, state


class DagRunTimeout(DagRunFailed, TimeoutError):
    """A DAG run did not finish in time."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process handed out before (ports are bound later)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def clean_environ() -> dict[str, str]:
    """This process's environment less what would configure Airflow or pytest in a child process."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_DROPPED)}


def direct_session() -> requests.Session:
    """An HTTP session that never goes through a proxy: all traffic here is loopback."""
    session = requests.Session()
    session.trust_env = False
    return session


def epoch(stamp: str | None) -> float:
    """Epoch seconds of an ISO 8601 time as the REST API and the emulator write it (``Z`` or an offset)."""
    assert stamp, "no timestamp"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


T = TypeVar("T")


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 90.0,
    interval: float = 0.25,
    *,
    tolerate: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds.

    An exception of ``tolerate`` raised by the probe counts as "not yet" (a page mid-navigation);
    ``tolerate=()`` lets every exception through at once.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
        except tolerate as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})")
        time.sleep(interval)


# ------------------------------------------------------------------------------ processes


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of the live processes (this one aside) whose environment has ``name=value``."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def marked_processes(marker: str) -> list[int]:
    """Pids of the live processes of the deployment whose marker is ``marker``."""
    return processes_with_env(MARKER_ENV, marker)


def _signal(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


ENSURE_REDIS_SCRIPT = REPO_ROOT / "scripts" / "ensure_redis.sh"


@dataclass(frozen=True)
class Topology:
    """How many of each component; ``celery_workers > 0`` switches to the CeleryExecutor (and Redis)."""

    schedulers: int = 1
    triggerers: int = 1
    api_servers: int = 1
    celery_workers: int = 0

    def names(self, kind: str) -> list[str]:
        count = {"scheduler": self.schedulers, "triggerer": self.triggerers, "api-server": self.api_servers,
                 "celery-worker": self.celery_workers, "dag-processor": 1}[kind]  # fmt: skip
        return [kind] if count == 1 else [f"{kind}-{n}" for n in range(1, count + 1)]


@dataclass(frozen=True)
class Connection:
    """An AIReiter connection of a test deployment to the module's emulator (``AIRFLOW_CONN_<ID>``).

    :param callbacks_to: the index of the api-server the completion callbacks are addressed to
        (``callback_base_url``); ``None`` for a polling-only connection.
    :param extra: further connection extras (``callback_secret``, ``timeout``, ...).
    """

    callbacks_to: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """What an e2e test module states about its deployment, as ``SETUP = Setup(...)`` at module level.

    tests/e2e/conftest.py builds the rest: the module-scoped ``emulator`` (the AIReiter emulator at
    real speed on a free port), ``media`` (a fresh folder, ``AIREITER_MEDIA_ROOT``) and ``deployment``
    (these DAG files in a fresh DAGs folder, the connections as environment variables).

    :param name: a prefix of the temporary folders.
    :param dag_files: the DAG files copied into the DAGs folder.
    :param connections: by connection id.
    :param emulator: keyword arguments of the ``Emulator`` (durations, credits, duplicate_policy, ...).
    :param serve_media: whether the media view serves ``media`` (``[aireiter] media_roots``).
    :param env: further environment of the Airflow processes.
    :param options: further keyword arguments of :class:`AirflowDeployment` (topology, startup_timeout).
    """

    name: str
    dag_files: Sequence[Path]
    connections: Mapping[str, Connection]
    emulator: Mapping[str, Any] = field(default_factory=dict)
    serve_media: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api_servers(self) -> int:
        topology = self.options.get("topology") or Topology()
        return int(topology.api_servers)


#: The component a process belongs to, in its environment (``component_hostname`` reads it).
COMPONENT_ENV = "AIREITER_E2E_COMPONENT"


def component_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` in a distributed deployment: the component's name.

    So the metadata database says which triggerer holds a trigger (``job.hostname``) and which Celery
    worker ran a task try (``task_instance.hostname``), although every process runs on this one host.
    """
    return os.environ.get(COMPONENT_ENV) or socket.getfqdn()


def ensure_redis_server() -> str:
    """The ``redis-server`` binary (``scripts/ensure_redis.sh`` installs Debian's package if needed)."""
    done = subprocess.run(["bash", str(ENSURE_REDIS_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise DeploymentStartupError(f"redis-server unavailable:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def ensure_postgres_binaries() -> Path:
    """The PostgreSQL server binaries' directory (``scripts/ensure_postgres.sh`` installs them if needed)."""
    done = subprocess.run(
        ["bash", str(ENSURE_POSTGRES_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise DeploymentStartupError(f"PostgreSQL binaries unavailable:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class PostgresCluster:
    """A private PostgreSQL cluster on 127.0.0.1:<free port> (owned by ``postgres`` when run as root)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.bindir = ensure_postgres_binaries()
        self.as_root = os.geteuid() == 0
        # Outside the workdir, which may not be traversable for the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="aireiter-e2e-pg-", dir="/tmp" if self.as_root else None))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.password = secrets.token_hex(12)
        self._env = {**env, "LC_ALL": "C"}

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        command = list(argv)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command] if shutil.which("runuser") else [
                "su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)
            ]  # fmt: skip
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=self._env,
            cwd=self.root, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise DeploymentStartupError(
                f"PostgreSQL: {argv[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{_tail(self.log_path)}"
            )

    def url(self, driver: str) -> str:
        return f"postgresql+{driver}://airflow:{self.password}@127.0.0.1:{self.port}/airflow"

    def start(self) -> None:
        self.log_path.touch()
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.log_path, "postgres", "postgres")
        bin_ = self.bindir
        # Trust on the private socket only (to create the role); TCP needs the role's password.
        self._run(str(bin_ / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c log_min_messages=warning"
        )
        for attempt in range(3):  # a free port may be taken by someone else meanwhile
            self.port = free_port()
            try:
                self._run(str(bin_ / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                          "-t", "60", "-o", f"-p {self.port} {options}")  # fmt: skip
                break
            except DeploymentStartupError:
                if attempt == 2:
                    raise
        psql = [str(bin_ / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.root), "-p", str(self.port)]
        self._run(*psql, "-U", "postgres", "-d", "postgres", "-c",
                  f"CREATE ROLE airflow LOGIN PASSWORD '{self.password}'", "-c",
                  "CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8'")  # fmt: skip

    def stop(self, copy_log_to: Path | None = None) -> None:
        pid = _postmaster_pid(self.data_dir)
        if pid is not None:
            _signal([pid], signal.SIGQUIT)  # immediate shutdown; its children follow it
            give_up = time.monotonic() + 20
            while _postmaster_pid(self.data_dir) is not None and time.monotonic() < give_up:
                time.sleep(0.1)
            if _postmaster_pid(self.data_dir) is not None:
                _signal([pid], signal.SIGKILL)
        if copy_log_to is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, copy_log_to)
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------ deployment

_LIVE: dict[int, AirflowDeployment] = {}


def _stop_all() -> None:
    for deployment in list(_LIVE.values()):
        deployment.stop()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks and atexit: the deployments stop


atexit.register(_stop_all)


class AirflowDeployment:
    """A real Airflow deployment (PostgreSQL + api-server + scheduler + dag-processor + triggerer).

    :param dags_folder: directory with the DAG files.
    :param env: extra environment for all Airflow processes (wins over the harness's settings).
    :param startup_timeout: seconds for all components to become healthy.
    :param api_port: the api-server's port (a free one by default).

    The workdir (AIRFLOW_HOME and logs) is removed at ``stop()``, unless :meth:`mark_failed` was
    called or ``AIREITER_E2E_KEEP=1`` is set.
    """

    def __init__(
        self,
        dags_folder: Path | str,
        env: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        api_port: int | None = None,
        topology: Topology | None = None,
        api_ports: Sequence[int] | None = None,
    ) -> None:
        self.dags_folder = Path(dags_folder).resolve()
        if not self.dags_folder.is_dir():
            raise ValueError(f"dags_folder {self.dags_folder} is not a directory")
        self.user_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.api_port = api_port or 0
        self.topology = topology or Topology()
        #: every api-server's port, the first one ``api_port``
        self.api_ports: list[int] = list(api_ports or [])
        if self.api_ports:
            self.api_port = self.api_ports[0]
        self.redis_port = 0
        self.marker = uuid.uuid4().hex[:16]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"aireiter-e2e-{self.marker}-")).resolve()
        self.airflow_home = self.workdir / "airflow-home"
        self.logs_dir = self.workdir / "logs"
        self.passwords_file = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        self.env: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._pg: PostgresCluster | None = None
        self._log_files: list[IO[bytes]] = []
        self._session = direct_session()
        self._token: str | None = None
        self._running = False
        self._failed = os.environ.get("AIREITER_E2E_KEEP", "") not in ("", "0", "false")
        self._dead: set[str] = set()  # killed on purpose (a fault), not a failure

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_urls(self) -> list[str]:
        """Every api-server's URL (the first is :attr:`api_url`)."""
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def components(self) -> list[str]:
        """The long-running processes, in start order (Redis first when there is one)."""
        names = ["redis"] if self.topology.celery_workers else []
        for kind in ("api-server", "scheduler", "dag-processor", "triggerer"):
            names += self.topology.names(kind)
        return names + (self.topology.names("celery-worker") if self.topology.celery_workers else [])

    def __enter__(self) -> AirflowDeployment:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._failed = True
        self.stop()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        _LIVE[id(self)] = self
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        began = time.monotonic()
        try:
            self.logs_dir.mkdir(parents=True)
            (self.airflow_home / "plugins").mkdir(parents=True)
            clean_env = clean_environ()
            self._pg = PostgresCluster(clean_env)
            self._pg.start()
            self.api_port = self.api_port or free_port()
            if len(self.api_ports) != self.topology.api_servers:
                self.api_ports = [self.api_port] + [free_port() for _ in range(self.topology.api_servers - 1)]
            if self.topology.celery_workers:
                self.redis_port = free_port()
            self.env = self._build_env(clean_env)
            self._migrate()
            for name in self.components:
                self._spawn(name)
            self._wait_until_healthy(time.monotonic() + self.startup_timeout)
            self._running = True
            sys.stderr.write(
                f"[airflow-e2e] up in {time.monotonic() - began:.1f}s at {self.api_url}; logs: {self.logs_dir}\n"
            )
        except BaseException:
            self._failed = True
            self.stop()
            raise

    def _build_env(self, base: Mapping[str, str]) -> dict[str, str]:
        assert self._pg is not None
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
        no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", base.get("NO_PROXY") or base.get("no_proxy")]))
        settings = {
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__PARALLELISM": "8",
            "CORE__DAGS_FOLDER": str(self.dags_folder),
            "CORE__PLUGINS_FOLDER": str(self.airflow_home / "plugins"),
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
            "DATABASE__SQL_ALCHEMY_CONN": self._pg.url("psycopg2"),
            "DATABASE__SQL_ALCHEMY_CONN_ASYNC": self._pg.url("asyncpg"),
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.api_port),
            "API__BASE_URL": self.api_url,
            "API__WORKERS": "1",
            "API__SECRET_KEY": secrets.token_hex(32),
            "API__EXPOSE_STACKTRACE": "True",
            "API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "LOGGING__LOGGING_LEVEL": "INFO",
            "LOGGING__BASE_LOG_FOLDER": str(self.airflow_home / "logs"),
            "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "DAG_PROCESSOR__PARSING_PROCESSES": "2",
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
        }
        if self.topology.celery_workers:
            settings.update(
                {
                    "CORE__EXECUTOR": "CeleryExecutor",
                    "CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3: name the driver Airflow has.
                    "CELERY__RESULT_BACKEND": "db+" + self._pg.url("psycopg2"),
                    "CELERY__WORKER_CONCURRENCY": "4",
                    # A killed worker's task is failed (and retried) after 20 s without a heartbeat, not 5 min.
                    "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                    "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                    "SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
                }
            )
        if self.topology != Topology():
            settings["CORE__HOSTNAME_CALLABLE"] = "tests.e2e.deployment.component_hostname"
        if self.topology.triggerers > 1:
            # A killed triggerer's triggers move once its heartbeat is this old.
            settings["TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"] = "10"
        return {
            **base,
            MARKER_ENV: self.marker,
            "PYTHONPATH": pythonpath,
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "AIRFLOW_HOME": str(self.airflow_home),
            **{f"AIRFLOW__{key}": value for key, value in settings.items()},
            **self.user_env,
        }

    def _airflow(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "airflow", *args]

    def _open_log(self, name: str) -> IO[bytes]:
        log = open(self.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log_files.append(log)
        return log

    def _migrate(self) -> None:
        log = self.logs_dir / "db-migrate.log"
        with open(log, "ab") as out:
            done = subprocess.run(
                self._airflow("db", "migrate"), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.workdir, timeout=max(60.0, self.startup_timeout), check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise DeploymentStartupError(f"`airflow db migrate` failed ({done.returncode}):\n{_indent(_tail(log))}")

    def _command(self, name: str) -> list[str]:
        kind, _, number = name.rpartition("-") if name[-1].isdigit() else (name, "", "1")
        if kind == "redis":
            return [ensure_redis_server(), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        if kind == "api-server":
            return self._airflow("api-server", "--host", "127.0.0.1", "--port", str(self.api_ports[int(number) - 1]))
        if kind == "celery-worker":
            # Each its own Celery name; serve-logs would listen on 0.0.0.0 (and two would collide on its port).
            return self._airflow("celery", "worker", "--celery-hostname", f"worker{number}@%h", "--skip-serve-logs")
        # serve-logs would listen on 0.0.0.0 (two triggerers on one host collide on its port); logs are local files
        return {
            "scheduler": self._airflow("scheduler", "--skip-serve-logs"),
            "dag-processor": self._airflow("dag-processor"),
            "triggerer": self._airflow("triggerer", "--skip-serve-logs"),
        }[kind]

    def _spawn(self, name: str) -> None:
        self.processes[name] = subprocess.Popen(
            self._command(name), stdin=subprocess.DEVNULL, stdout=self._open_log(name), stderr=subprocess.STDOUT,
            env={**self.env, COMPONENT_ENV: name}, cwd=self.workdir, start_new_session=True,
        )  # fmt: skip

    def _component_processes(self, name: str) -> list[int]:
        """Every live process of a component, task runners in process groups of their own included."""
        marked = set(processes_with_env(MARKER_ENV, self.marker))
        return [pid for pid in processes_with_env(COMPONENT_ENV, name) if pid in marked]

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send ``sig`` to every process of a component (SIGKILL: as its machine dies), the task
        runners Airflow's supervisor moved to process groups of their own included; its pid."""
        process = self.processes[name]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        for pid in self._component_processes(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), sig)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        self._dead.add(name)
        if sig == signal.SIGKILL:
            give_up = time.monotonic() + 10
            while self._component_processes(name) and time.monotonic() < give_up:
                time.sleep(0.1)
            left = self._component_processes(name)
            if left:
                raise DeploymentError(f"processes of {name} survived SIGKILL: {left}")
        return process.pid

    def restart(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop a component (``sig``, then SIGKILL after 15 s) and start it again."""
        process = self.processes[name]
        if process.poll() is None:  # a process killed earlier is not signalled again (its pid may be reused)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        self._spawn(name)
        self._dead.discard(name)
        if name.startswith("api-server"):
            self._wait_until_healthy(time.monotonic() + self.startup_timeout)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if name not in self._dead and process.poll() is not None:
                raise DeploymentError(
                    f"Airflow {name} exited with code {process.returncode}:\n{_indent(self.log_tail(name))}"
                )

    def _wait_until_healthy(self, deadline: float) -> None:
        last = "no answer yet"
        while True:
            try:
                self._check_alive()
            except DeploymentError as exc:
                raise DeploymentStartupError(str(exc)) from None
            try:
                for url in self.api_urls or [self.api_url]:
                    answer = self._session.get(f"{url}/api/v2/monitor/health", timeout=5)
                    if answer.status_code != 200:
                        last = f"{url}: HTTP {answer.status_code}: {answer.text[:300]}"
                        break
                    health = answer.json()
                    waiting = [key for key in _HEALTH_KEYS if (health.get(key) or {}).get("status") != "healthy"]
                    if waiting:
                        last = f"not healthy yet: {', '.join(waiting)}"
                        break
                else:
                    return
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {c} ---\n{_indent(self.log_tail(c, 40))}" for c in self.components)
                raise DeploymentStartupError(f"not healthy after {self.startup_timeout:.0f}s ({last})\n{tails}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every process of the deployment and the database, then remove the workdir. Idempotent."""
        if _LIVE.pop(id(self), None) is None:
            return
        self._running = False
        self._session.close()  # or uvicorn's graceful shutdown waits for our keep-alive connection
        groups = [process.pid for process in self.processes.values() if process.poll() is None]
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        # Busy task runners ignore SIGTERM and the scheduler waits for them: a short grace, then SIGKILL.
        give_up = time.monotonic() + self.stop_timeout
        while time.monotonic() < give_up:
            left = marked_processes(self.marker)
            if not left:
                break
            if time.monotonic() > give_up - self.stop_timeout + 3:
                _signal(left, signal.SIGKILL)
            time.sleep(0.2)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if self._pg is not None:
            self._pg.stop(copy_log_to=self.logs_dir / "postgres.log")
        for log in self._log_files:
            log.close()
        if self._failed:
            sys.stderr.write(f"[airflow-e2e] keeping workdir {self.workdir} for inspection\n")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def mark_failed(self) -> None:
        """Keep the workdir after ``stop()``."""
        self._failed = True

    def leftover_processes(self) -> list[int]:
        """Pids still alive of this deployment: marked processes and the PostgreSQL server."""
        left = marked_processes(self.marker)
        postmaster = _postmaster_pid(self._pg.data_dir) if self._pg is not None else None
        return left + ([postmaster] if postmaster is not None else [])

    # ------------------------------------------------------------------ process logs
    def process_log(self, component: str) -> str:
        """The whole stdout/stderr of a component (``api-server``, ``scheduler``, ...)."""
        try:
            return (self.logs_dir / f"{component}.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, component: str, lines: int = 60) -> str:
        return _tail(self.logs_dir / f"{component}.log", lines)

    # ------------------------------------------------------------------ REST API
    def password(self, user: str = "admin") -> str:
        """The password Airflow's simple auth manager generated for ``user`` (deployments without all-admins)."""
        return str(json.loads(self.passwords_file.read_text())[user])

    def login_token(self, username: str, password: str | None = None) -> str:
        """A JWT for ``username`` from ``POST /auth/token``, as the UI's login form gets it.

        ``password`` defaults to the one Airflow generated for ``username`` (:meth:`password`).
        """
        if password is None:
            password = self.password(username)
        answer = self._session.post(
            f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if answer.status_code not in (200, 201):
            raise DeploymentError(f"could not log in as {username}: HTTP {answer.status_code} {answer.text[:500]}")
        return str(answer.json()["access_token"])

    def _fetch_token(self) -> str:
        if self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True").lower() == "false":
            return self.login_token("admin")
        answer = self._session.get(f"{self.api_url}/auth/token", timeout=30)
        if answer.status_code not in (200, 201):
            raise DeploymentError(f"no API token: HTTP {answer.status_code} {answer.text[:500]}")
        return str(answer.json()["access_token"])

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """An authenticated request to the api-server (``path`` relative to ``api_url``); never raises on status."""
        url = f"{self.api_url}/{path.lstrip('/')}"
        kwargs.setdefault("timeout", 60)
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            if self._token is None:
                self._token = self._fetch_token()
            headers["Authorization"] = f"Bearer {self._token}"
            answer = self._session.request(method, url, headers=headers, **kwargs)
            if answer.status_code != 401 or attempt:
                return answer
            self._token = None  # expired: fetch a new one once
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, *, ok: Sequence[int] = (200, 201, 204), **kwargs: Any) -> Any:
        """Like :meth:`request`, but an unexpected status raises; returns the JSON body."""
        answer = self.request(method, path, **kwargs)
        if answer.status_code not in ok:
            raise DeploymentError(f"{method} {path} -> HTTP {answer.status_code}: {answer.text[:2000]}")
        return answer.json() if answer.content else None

    def health(self) -> dict[str, Any]:
        return dict(self.api("GET", "/api/v2/monitor/health"))

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while True:
            self._ensure_running()
            answer = self.request("GET", f"/api/v2/dags/{dag_id}")
            if answer.status_code == 200:
                return dict(answer.json())
            if time.monotonic() > deadline:
                errors = self.api("GET", "/api/v2/importErrors").get("import_errors", [])
                raise DeploymentError(
                    f"DAG {dag_id!r} not parsed within {timeout:.0f}s; import errors: {json.dumps(errors)[:3000]}\n"
                    f"--- dag-processor ---\n{_indent(self.log_tail('dag-processor', 40))}"
                )
            time.sleep(1.0)

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: str | None = None,
    ) -> str:
        """Wait for the DAG to be parsed, unpause it and trigger a run; the run id."""
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        body: dict[str, Any] = {"logical_date": logical_date, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        deadline = time.monotonic() + 30  # right after the first parse the serialized DAG may lag behind
        while True:
            answer = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            if answer.status_code in (200, 201):
                return str(answer.json()["dag_run_id"])
            if answer.status_code != 404 or time.monotonic() > deadline:
                raise DeploymentError(f"triggering {dag_id}: HTTP {answer.status_code}: {answer.text[:2000]}")
            time.sleep(1.0)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0, *, raise_on_failure: bool = True) -> str:
        """Wait for ``success`` or ``failed``; other than success raises :class:`DagRunFailed` with diagnostics."""
        deadline = time.monotonic() + timeout
        while True:
            self._ensure_running()
            state = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").get("state")
            if state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise DagRunTimeout(
                    f"DAG run {dag_id}/{run_id} still {state!r} after {timeout:.0f}s\n" + self.diagnostics(dag_id, run_id),
                    dag_id=dag_id, run_id=run_id, state=state,
                )  # fmt: skip
            time.sleep(1.0)
        if state != "success" and raise_on_failure:
            raise DagRunFailed(
                f"DAG run {dag_id}/{run_id} ended {state!r}\n" + self.diagnostics(dag_id, run_id),
                dag_id=dag_id, run_id=run_id, state=state,
            )  # fmt: skip
        return str(state)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones included)."""
        data = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return list(data.get("task_instances", []))

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """One task instance of a run, as :meth:`task_instances` lists it."""
        for ti in self.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti.get("map_index", -1) == map_index:
                return ti
        raise DeploymentError(f"no task instance {task_id}[{map_index}] in {dag_id}/{run_id}")

    def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Every task instance's state, by ``task_id`` (``task_id[map_index]`` for mapped ones)."""
        return {ti_key(ti): ti.get("state") for ti in self.task_instances(dag_id, run_id)}

    def results(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Every task instance's return value (XCom), keyed as in :meth:`states`."""
        return {
            ti_key(ti): self.xcom(dag_id, run_id, ti["task_id"], map_index=ti.get("map_index", -1))
            for ti in self.task_instances(dag_id, run_id)
        }

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """One try's task log as text lines (read through the API, as a user reads it)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        data = self.api(
            "GET", path, params={"map_index": map_index, "full_content": "true"}, headers={"Accept": "application/json"}
        )
        return "\n".join(_render_log_entry(entry) for entry in data.get("content") or [])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        data = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": "true", "stringify": "false"},
        )
        return data.get("value")

    def diagnostics(self, dag_id: str, run_id: str) -> str:
        """Task states, each task's log and the scheduler's and triggerer's log tails, for a failure message."""
        try:
            tis = self.task_instances(dag_id, run_id)
        except Exception as exc:
            return f"(could not list task instances: {exc})"
        parts = []
        for ti in tis:
            parts.append(f"--- {ti_key(ti)}: {ti.get('state')} (try {ti.get('try_number')}) ---")
            if ti.get("state"):
                try:
                    text = self.task_log(
                        dag_id, run_id, ti["task_id"], max(1, ti.get("try_number") or 1), ti.get("map_index", -1)
                    )
                except Exception as exc:
                    text = f"(no log: {exc})"
                parts.append(_indent(text))
        watched = [c for c in self.components if c.startswith(("scheduler", "triggerer", "celery-worker"))]
        parts += [f"--- {c} (tail) ---\n{_indent(self.log_tail(c, 30))}" for c in watched]
        return "\n".join(parts)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the metadata database."""
        import sqlalchemy

        if self._pg is None:
            raise DeploymentError("the deployment has no database (not started)")
        engine = sqlalchemy.create_engine(self._pg.url("psycopg2"), poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(sqlalchemy.text(sql), params)]
        finally:
            engine.dispose()

    def _ensure_running(self) -> None:
        if not self._running:
            raise DeploymentError("the deployment is not running")
        self._check_alive()


def ti_key(ti: Mapping[str, Any]) -> str:
    """How a task instance is named in :meth:`AirflowDeployment.states`: ``task_id`` or ``task_id[map_index]``."""
    map_index = ti.get("map_index", -1)
    return str(ti["task_id"]) if map_index in (-1, None) else f"{ti['task_id']}[{map_index}]"


#: Signature of the ``airflow_deployment_factory`` fixture (tests/e2e/conftest.py).
DeploymentFactory = Callable[..., AirflowDeployment]


#: keys not repeated as ``key=value`` after a log line's text
_NOT_EXTRAS = frozenset(
    {"timestamp", "level", "logger", "event", "error_detail", "dag_id", "task_id", "run_id", "map_index",
     "try_number", "ti_id", "filename", "lineno", "logger_name"}
)  # fmt: skip


def _render_log_entry(entry: Any) -> str:
    """One structured task-log entry as a line of text (with a traceback when it has one)."""
    if not isinstance(entry, dict):
        return str(entry)
    head = " ".join(str(entry[k]) for k in ("timestamp", "level", "logger") if entry.get(k))
    extras = " ".join(f"{k}={v}" for k, v in entry.items() if k not in _NOT_EXTRAS)
    line = " ".join(filter(None, [head, str(entry.get("event", "")), extras]))
    for error in entry.get("error_detail") or []:
        if isinstance(error, dict):
            frames = [f'  File "{f.get("filename")}", line {f.get("lineno")}' for f in error.get("frames") or []]
            line += "\n" + "\n".join([*frames, f"{error.get('exc_type')}: {error.get('exc_value')}"])
    return line
