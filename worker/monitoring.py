"""What a worker tells Flower about itself: a Celery bootstep whose `info()` joins the worker's stats.

Celery's `WorkController.stats()` merges `info(parent)` of every worker bootstep, so the `rmscore.*`
entries below show in `celery inspect stats` and on Flower's worker page, tab Other (and `/api/workers`): the
model the worker holds (id, revision, dtype, device, GPU), its batch budget, what it has scored and
its throughput over the last minute. `install()` (called by `rmscore worker` once the engine is
loaded and warmed up) also starts the Prometheus endpoint of `worker.metrics` when a port is set.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps

from worker.gpu import cuda_memory

if TYPE_CHECKING:
    from worker.engine import EngineStats
    from worker.runner import WorkerRuntime

log = logging.getLogger(__name__)

THROUGHPUT_WINDOW_S = 60.0
SAMPLE_INTERVAL_S = 1.0
MIB = 1024**2


class Throughput:
    """Rate of a growing counter over a sliding window, from samples taken about once a second.

    Samples come from a thread, not from the chunk task: a worker that stopped scoring shows its
    rate fall to 0 within the window instead of keeping the rate of its last chunk.
    """

    def __init__(self, read: Callable[[], int], window: float = THROUGHPUT_WINDOW_S) -> None:
        self.read = read
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._samples.append((now, self.read()))
            # Keep one sample at or before the window's start, so the rate spans the whole window.
            while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
                self._samples.popleft()

    def rate(self, now: float | None = None) -> float:
        """Units per second between the oldest kept sample and now (0 while the counter stands still)."""
        self.sample(now)
        with self._lock:
            (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass
class Monitor:
    """Reads what the worker holds and has done; shared by the bootstep and the metrics endpoint."""

    runtime: WorkerRuntime
    load_seconds: float
    # The engine's counters at install time: the warm-up batch is not work the worker did for anyone.
    baseline: EngineStats = field(init=False)
    throughput: Throughput = field(init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self.baseline = copy.copy(self.runtime.engine.stats)
        self.throughput = Throughput(self.tokens_scored)
        self.throughput.sample()

    # ------------------------------------------------------------------ counters since start-up

    def conversations_scored(self) -> int:
        return int(self.runtime.engine.stats.items - self.baseline.items)

    def cache_hits(self) -> int:
        """Conversations answered from the score cache instead of the model."""
        return int(getattr(self.runtime, "cache_hits", 0))

    def tokens_scored(self) -> int:
        return int(self.runtime.engine.stats.tokens - self.baseline.tokens)

    def padded_tokens(self) -> int:
        return int(self.runtime.engine.stats.padded_tokens - self.baseline.padded_tokens)

    def batches(self) -> int:
        return int(self.runtime.engine.stats.batches - self.baseline.batches)

    def padding_efficiency(self) -> float:
        """Real / padded tokens of the batches scored since start-up (1.0 before any)."""
        padded = self.padded_tokens()
        return self.tokens_scored() / padded if padded else 1.0

    # ------------------------------------------------------------------ what Flower shows

    def held_model(self) -> dict[str, str | None]:
        """The model this worker holds and where it runs. Flower's stats and the labels of the
        Prometheus info metric name the same facts, so they cannot disagree about the model."""
        engine = self.runtime.engine
        return {
            "model_id": engine.model,
            "revision": engine.revision,
            "weights": engine.weights,
            "dtype": engine.dtype,
            "device": engine.device,
        }

    def info(self) -> dict[str, Any]:
        rt, engine = self.runtime, self.runtime.engine
        cur = rt.current
        return {
            "worker": rt.name,
            "model": engine.name,
            **self.held_model(),
            "gpu": gpu_info(engine.device),
            "queue": rt.queue,
            "max_batch_tokens": engine.max_batch_tokens,
            "max_batch_size": engine.max_batch_size,
            "lanes": engine.lanes,
            "packed_linears": engine.packed_linears,
            "model_load_seconds": round(self.load_seconds, 3),
            "chunks_done": rt.chunks_done,
            "items_scored": rt.items_done,
            "conversations_scored": self.conversations_scored(),
            "cache_hits": self.cache_hits(),
            "tokens_scored": self.tokens_scored(),
            "tokens_per_second_1m": round(self.throughput.rate(), 1),
            "padding_efficiency": round(self.padding_efficiency(), 4),
            "oom_splits": engine.stats.oom_splits,
            "current_job": cur.job_id if cur else None,
            "current_chunk": cur.chunk_id if cur else None,
            "online": rt.online.stats.summary() if rt.online is not None else None,
        }

    # ------------------------------------------------------------------ sampler thread

    def start(self) -> None:
        threading.Thread(target=self._sample_forever, name="rmscore-throughput", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _sample_forever(self) -> None:
        while not self._stopping.wait(SAMPLE_INTERVAL_S):
            self.throughput.sample()


def gpu_info(device: str) -> dict[str, Any] | None:
    """Name and memory (MiB) of the worker's CUDA device; None on CPU, `{"error"}` if CUDA cannot answer."""
    try:
        mem = cuda_memory(device)
    except Exception as exc:  # noqa: BLE001 - stats must answer even if the driver is unhappy
        return {"error": f"{type(exc).__name__}: {exc}"}
    if mem is None:
        return None
    return {
        "index": mem.index,
        "name": mem.name,
        "memory_total_mib": mem.total // MIB,
        "memory_allocated_mib": mem.allocated // MIB,
        "memory_reserved_mib": mem.reserved // MIB,
        "max_memory_allocated_mib": mem.max_allocated // MIB,
    }


def flower_stats(info: dict[str, Any], prefix: str = "rmscore.") -> dict[str, Any]:
    """`info` as flat `rmscore.<key>` entries of scalars (a nested dict as `rmscore.gpu.name`, ...).

    Flower's worker page puts stats it does not know under its **Other** tab, one row per top-level
    key, printing each value with `str()`: one nested `rmscore` dict read as a raw Python dict. Flat
    keys read as one row each, grouped by their common prefix (also in `/api/workers` and
    `celery inspect stats`)."""
    flat: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            flat.update(flower_stats(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def make_step(monitor: Monitor) -> type[bootsteps.StartStopStep]:
    """A worker bootstep bound to `monitor` (Celery instantiates steps itself, so bind by closure)."""

    class RmscoreMonitoring(bootsteps.StartStopStep):
        label = "rmscore monitoring"

        def info(self, parent: Any) -> dict[str, Any]:
            return flower_stats(monitor.info())

        def start(self, parent: Any) -> None:
            monitor.start()

        def stop(self, parent: Any) -> None:
            monitor.stop()

    return RmscoreMonitoring


def install(app: Celery, runtime: WorkerRuntime, *, load_seconds: float, metrics_port: int | None) -> Monitor:
    """Add the stats bootstep to `app` (before `app.Worker(...)`) and serve metrics if a port is set.

    `metrics_port` 0 or None: no metrics endpoint. Several workers on one host need one port each.
    """
    monitor = Monitor(runtime, load_seconds)
    app.steps["worker"].add(make_step(monitor))
    if metrics_port:
        from worker.metrics import serve

        serve(monitor, metrics_port)
    return monitor
