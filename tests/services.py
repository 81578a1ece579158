"""Real services for the tests, on loopback and free ports: Redis, a throwaway PostgreSQL cluster and Celery workers.

Each is started once per session by a fixture and stopped at the end. Debian's ``redis-server`` and ``postgresql``
are installed when missing and the tests run as root (``.ci/run`` installs them up front). A service that cannot
start fails the tests that need it, with the reason: it never skips them.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.system_packages import install_debian_packages

REPO = Path(__file__).resolve().parent.parent
TEST_VISIBILITY_TIMEOUT_S = 20  # a killed worker's task is handed out again this long after it was taken
POSTGRES_SUPERUSER = "pathreview"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, wait_s: float = 10) -> None:
    """Ask a child process to end; kill it when it does not within ``wait_s``."""
    process.terminate()
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(wait_s)


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# -- Redis ---------------------------------------------------------------------------------------

def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        install_debian_packages("redis-server")
        found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed; install Debian's redis-server package (.ci/run does)")
    return found


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="pathreview-redis-"))
        self.log = self.dir / "redis.log"
        self.process = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.log), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis

        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}: {_log_tail(self.log)}")
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port} within 30 s: {_log_tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- PostgreSQL ----------------------------------------------------------------------------------

def _postgres_bin() -> Path:
    def find() -> Path | None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
        found = versions[-1] if versions else shutil.which("initdb")
        return Path(found).parent if found else None
    found = find()
    if found is None:
        install_debian_packages("postgresql")
        found = find()
    if found is None:
        raise RuntimeError("PostgreSQL's initdb is not installed; install Debian's postgresql package (.ci/run does)")
    return found


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` system user (created if missing)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True,
                       capture_output=True)
    return "postgres"


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.user = _unprivileged_user()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pathreview-pg-"))
        self.data, self.log = self.dir / "data", self.dir / "postgres.log"
        if self.user:
            shutil.chown(self.dir, self.user)
        self.url = f"postgresql+psycopg://{POSTGRES_SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", POSTGRES_SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c timezone=UTC -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.dir, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()} "
                               f"{_log_tail(self.log, 1500) if self.log.exists() else ''}")

    def _administer(self, statement: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE cannot run inside one)."""
        from sqlalchemy import create_engine, text

        server = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with server.connect() as conn:
                conn.execute(text(statement))
        finally:
            server.dispose()

    def new_database(self) -> str:
        """The URL of a new empty database on this server."""
        name = f"pathreview_test_{uuid.uuid4().hex[:12]}"
        self._administer(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def drop_database(self, url: str) -> None:
        self._administer(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- Celery workers ------------------------------------------------------------------------------

class CeleryWorker:
    """``run_dashboard.py worker`` as a subprocess in its own process group (so the whole worker can be killed)."""

    def __init__(self, broker_url: str, workspace: Path | None, name: str, torch_threads: int = 1, extra_env: dict | None = None,
                 device: str = "cpu") -> None:
        self.broker_url, self.workspace, self.name, self.torch_threads, self.device = broker_url, workspace, name, torch_threads, device
        self.log = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATHREVIEW_VISIBILITY_TIMEOUT": str(TEST_VISIBILITY_TIMEOUT_S),
                    "PATHREVIEW_RETRY_DELAY": "1", **(extra_env or {})}
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 120) -> None:
        self.starts += 1
        command = [sys.executable, str(REPO / "run_dashboard.py"), "worker", "--broker", self.broker_url, "--concurrency", "1",
                   "--pool", "prefork", "--torch-threads", str(self.torch_threads), "--name", f"{self.name}-{self.starts}@%h",
                   "--device", self.device]
        if self.workspace is not None:
            command += ["--workspace", str(self.workspace)]
        offset = self.log.stat().st_size
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while " ready." not in self.log.read_bytes()[offset:].decode(errors="replace"):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with code {self.process.returncode}: {_log_tail(self.log)}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the Celery worker was not ready within {timeout:.0f} s: {_log_tail(self.log)}")
            time.sleep(0.2)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        if not self.alive:
            self.start()

    def _signal_group(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)  # the worker and its pool processes: the group this object started

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crash of the worker host would."""
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def stop(self) -> None:
        self._signal_group(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(30)

    def output(self) -> str:
        return _log_tail(self.log, 20_000)


# -- fixtures ------------------------------------------------------------------------------------

def _serve(service: type, name: str):
    try:
        server = service()
    except Exception as exc:  # noqa: BLE001 - reported as the failure of every test that needs it
        pytest.fail(f"{name} could not be started for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    yield from _serve(RedisServer, "Redis")


@pytest.fixture(scope="session")
def postgres_server():
    yield from _serve(PostgresServer, "PostgreSQL")


@pytest.fixture
def postgres_database(postgres_server):
    """The URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of an empty case database: a fresh SQLite file, then a fresh PostgreSQL database (each test runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def empty_store(store_url):
    """A case store opened (and migrated) on ``store_url``."""
    from core.store.database import open_store

    store = open_store(store_url)
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def celery_workspace(demo_workspace, redis_server, postgres_server, tmp_path_factory) -> Path:
    """A copy of the demo workspace set up for several machines: its case store on PostgreSQL (the demo's rows copied
    there) and ``broker_url`` naming the test Redis, with an empty cache."""
    from core.store.transfer import copy_store
    from core.workspace import read_workspace_config, write_workspace_config

    root = tmp_path_factory.mktemp("celery") / "workspace"
    shutil.copytree(demo_workspace, root, ignore=shutil.ignore_patterns("cache", "cases.db*"))
    database = postgres_server.new_database()
    copy_store(f"sqlite:///{demo_workspace / 'cases.db'}", database)
    config = read_workspace_config(root)
    write_workspace_config(root, config.model_copy(update={"database_url": database, "broker_url": redis_server.url}))
    return root


@pytest.fixture(scope="session")
def celery_worker(celery_workspace, redis_server):
    worker = CeleryWorker(redis_server.url, celery_workspace, "test-worker")
    try:
        worker.start()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the Celery worker could not be started: {exc}", pytrace=False)
    yield worker
    worker.stop()
