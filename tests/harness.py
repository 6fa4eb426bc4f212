"""The one home for the real processes tests and benches start: `rmscore api`, `worker` and
`flower` (and any other CLI command) with `launch`, readiness with `wait_http` / `start_api` /
`WorkerProc.wait_ready`, stopping with `stop_all`; their environment (`service_env`) and database
(`migrated`); a whole private stack (`local_stack`: redis-server, SQLite, worker, api); and the
servers a test breaks on purpose, a private `redis-server` and PostgreSQL cluster (fault tests kill
and restart their own, never the machine's shared ones, which other suites use).

Import as `harness`: pytest puts tests/ on sys.path, and a bench script run from the repo root
puts it there itself (bench/README.md). The suite kits (apistack, monkit, faultkit, pipekit,
hostile's conftest) build their stacks from these pieces.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit import CLI, REPO, clean_env, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A `redis-server` without persistence, so a restart comes back empty (as many fleets run it)."""

    log: Path
    password: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisServer:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--daemonize", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server and everything it held are gone at once (no persistence to reload)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url)


def launch(
    args: list[str], env: dict[str, str], log: Path, *, cwd: Path = REPO
) -> subprocess.Popen[bytes]:
    """`rmscore ARGS` in its own session (signals reach only it), its output in `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*CLI, *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, *, auth: Any = None, timeout: float = 120
) -> None:
    """Until `url` answers 200; RuntimeError, with the end of `log`, if `proc` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, auth=auth, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def start_api(
    env: dict[str, str], log: Path, port: int | None = None, timeout: float = 120, *, cwd: Path = REPO
) -> tuple[str, subprocess.Popen[bytes]]:
    """A real `rmscore api` process on loopback; returns (base URL, process) once /healthz answers."""
    port = port or free_port()
    proc = launch(["api", "--host", "127.0.0.1", "--port", str(port)], env, log, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, log, timeout=timeout)
    except RuntimeError:
        stop_all([proc])
        raise
    return url, proc


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM to each (their graceful shutdown, in parallel), then SIGKILL any still up after `timeout`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    stop_all([proc])


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


PG_BIN = _pg_bin()


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster (initdb in a temporary directory, a free port, trust auth) that a
    test may stop and start: an outage of the database alone, never of the machine's shared server.

    PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user.
    """

    port: int = field(default_factory=free_port)
    root: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        import os

        assert PG_BIN is not None and self.root is not None
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def init(self) -> PostgresServer:
        import os
        import tempfile

        # Under /tmp, not pytest's tmp_path: the postgres user cannot enter root's 0700 pytest dirs.
        self.root = Path(tempfile.mkdtemp(prefix="rmscore-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> PostgresServer:
        assert self.root is not None
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-o", opts, "-w", "start")
        return self

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected at once and new connections are refused."""
        assert self.root is not None
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if self.root is None:
            return
        import contextlib

        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


@dataclass
class WorkerProc:
    """A real `rmscore worker` process (in its own session, so signals reach only it)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye (a machine lost)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (Celery's warm shutdown: the chunk in hand finishes), then wait for the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"worker {self.name} ignored SIGTERM for {timeout}s:\n{self.output()[-3000:]}"
            ) from None

    def wait_ready(self, redis_client: Any, timeout: float = 180) -> WorkerProc:
        """Until Celery says ready (after the model is loaded and warmed up) and the heartbeat is there."""
        from rmscore import keys

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited {self.proc.returncode}:\n{self.output()[-4000:]}")
            return bool(redis_client.exists(keys.worker_heartbeat(self.name))) and " ready." in self.output()

        try:
            wait_until(ready, timeout, f"worker {self.name}", 0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.output()[-4000:]}") from None
        return self


def start_worker_proc(
    env: dict[str, str], name: str, log: Path, args: list[str] | None = None, *, device: str = "cpu"
) -> WorkerProc:
    """`rmscore worker --device DEVICE --name NAME ARGS`, not waited for (`WorkerProc.wait_ready`)."""
    cmd = [*CLI, "worker", "--device", device, "--name", name, *(args or [])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return WorkerProc(name, proc, log, env)


def service_env(db_url: str, broker_url: str, model: str | Path, **extra: str) -> dict[str, str]:
    """The environment of `rmscore` processes under test: `clean_env`, their database, broker and
    default model, on the CPU; `extra` last (it may override any of these)."""
    base = {
        "RMSCORE_DATABASE_URL": db_url,
        "RMSCORE_BROKER_URL": broker_url,
        "RMSCORE_MODEL": str(model),
        "RMSCORE_DEVICE": "cpu",
    }
    return clean_env(**{**base, **extra})


def migrated(db_url: str) -> Any:
    """The database at `db_url` with rmscore's schema upgraded to the latest migration; its Engine."""
    from db.migrate import upgrade
    from db.session import get_engine

    db = get_engine(db_url)
    upgrade(db)
    return db


@dataclass
class LocalStack:
    """A private redis-server, a SQLite file, a ready `rmscore worker` and, when asked, `rmscore api`."""

    redis_server: RedisServer
    env: dict[str, str]
    worker: WorkerProc
    url: str = ""
    api: subprocess.Popen[bytes] | None = None


@contextmanager
def local_stack(
    tmp: Path, model_dir: Path, worker_name: str, *, api: bool = True, **extra: str
) -> Iterator[LocalStack]:
    """Start a LocalStack in `tmp` (heartbeat every second; `extra` goes into every process' environment);
    afterwards stop the API, the worker (SIGTERM: it must exit) and the redis-server."""
    redis_server = RedisServer(tmp / "redis.log").start()
    try:
        db_url = f"sqlite:///{tmp / 'rmscore.db'}"
        migrated(db_url)
        env = service_env(db_url, redis_server.url, model_dir, RMSCORE_HEARTBEAT_INTERVAL="1", **extra)
        stack = LocalStack(redis_server, env, start_worker_proc(env, worker_name, tmp / "worker.log"))
        try:
            stack.worker.wait_ready(redis_server.client())
            if api:
                stack.url, stack.api = start_api(env, tmp / "api.log")
            yield stack
        finally:
            if stack.api is not None:
                stop_proc(stack.api)
            stack.worker.stop()
    finally:
        redis_server.kill()
