"""One terminal for several processes (`rmscore up`): each line prefixed with its process, start-up
chatter held back, known noise dropped.

While the stack starts, lines are kept (the last `HELD` of each process) and shown only if they
look wrong (an error, a traceback) or if the start fails, when `replay` prints what was kept: a
healthy start prints nothing but the URLs. Once the stack is ready (`release`), every line is shown
with its prefix, except the known noise below, which says nothing a user of `up` can act on.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import IO

HELD = 60  # lines kept per process while starting: enough to see why one of them failed

# Lines that say nothing to someone running `rmscore up`, at any time.
NOISE: tuple[re.Pattern[str], ...] = (
    # The supervisor's own readiness polls, answered 503 until a worker is warm.
    re.compile(r'"GET /(readyz|healthz)(\?[^ "]*)? HTTP/[\d.]+" \d{3}'),
    # Alembic announcing its plugins on every migration run.
    re.compile(r"alembic\.runtime\.plugins"),
    # Celery's multi-line warning about running as root (containers, CI): not actionable here.
    re.compile(r"SecurityWarning|running the worker with superuser privileges|absolutely not recommended"),
    re.compile(r"^\s*(Please specify a different user using the --uid option\.|User information: uid=\d+)"),
    # Flower asking workers that are busy scoring or still loading; it retries by itself.
    re.compile(r"Inspect method \w+ failed"),
)
# Expected while starting (the API answers "not ready" until a worker is warm): held like any other.
STARTING: tuple[re.Pattern[str], ...] = (re.compile(r"^readyz: "),)
# Lines shown even while starting: something is wrong.
WRONG = re.compile(r"\b(ERROR|CRITICAL|FATAL|Traceback|[A-Za-z]*Error:)")


def is_noise(line: str) -> bool:
    return any(p.search(line) for p in NOISE)


class LogMux:
    """Lines of named processes onto one writer, prefixed `name | `; thread-safe (one reader thread
    per process feeds it)."""

    def __init__(self, names: Iterable[str], write: Callable[[str], None]) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.write = write
        self.starting = True
        self.held: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        """A process that joined after construction (its name may be wider)."""
        with self._lock:
            self.width = max(self.width, len(name))

    def feed(self, name: str, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip() or is_noise(line):
            return
        with self._lock:
            if self.starting and (any(p.search(line) for p in STARTING) or not WRONG.search(line)):
                self.held.setdefault(name, deque(maxlen=HELD)).append(line)
                return
            self.write(self._prefixed(name, line))

    def release(self) -> None:
        """The stack is ready: from now on every line is shown; what the start said is dropped."""
        with self._lock:
            self.starting = False
            self.held.clear()

    def replay(self, names: Iterable[str] | None = None) -> None:
        """The start failed: print what the processes (`names`, or all) said while starting."""
        with self._lock:
            for name in list(self.held) if names is None else names:
                for line in self.held.pop(name, ()):
                    self.write(self._prefixed(name, line))

    def pump(self, name: str, stream: IO[bytes]) -> threading.Thread:
        """Feed `stream`'s lines (a child's stdout) from a daemon thread until it closes."""

        def run() -> None:
            with stream:
                for raw in iter(stream.readline, b""):
                    self.feed(name, raw.decode("utf-8", "replace"))

        t = threading.Thread(target=run, name=f"log-{name}", daemon=True)
        t.start()
        return t

    def _prefixed(self, name: str, line: str) -> str:
        return f"{name:<{self.width}} | {line}"
