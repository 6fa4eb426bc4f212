"""Prometheus metrics of one worker process, on its own port (RMSCORE_WORKER_METRICS_PORT or
`rmscore worker --metrics-port`; several workers on one host need one port each).

Counters and gauges are read from the engine's and the runtime's counters at scrape time, so the
scoring path pays nothing for them. The one exception is the batch latency histogram, which needs
every micro-batch: the engine's forward pass is timed as it returns.
Every sample carries `worker` and `model` labels, so one dashboard can sum a fleet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from worker.gpu import cuda_memory

if TYPE_CHECKING:
    from worker.engine import Scorer
    from worker.monitoring import Monitor
    from worker.online import OnlineStats

log = logging.getLogger(__name__)

# A tiny model on CPU takes milliseconds a batch, the 8B model on a GPU about a second.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
ONLINE_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _WorkerCollector:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        m, rt = self.monitor, self.monitor.runtime
        engine = rt.engine
        labels = ["worker", "model"]
        values = [rt.name, engine.name]

        held = m.held_model()
        info = GaugeMetricFamily(
            "rmscore_worker_info", "The model this worker holds (always 1).", labels=[*labels, *held]
        )
        # A label value is a string: an unknown revision or weights digest reads as "".
        info.add_metric([*values, *(value or "" for value in held.values())], 1)
        yield info

        counters = (
            ("rmscore_worker_chunks", "Chunks this worker scored and stored.", rt.chunks_done),
            ("rmscore_worker_items_scored", "Job items this worker scored and stored.", rt.items_done),
            (
                "rmscore_worker_conversations_scored",
                "Conversations through the model (a pair is two).",
                m.conversations_scored(),
            ),
            (
                "rmscore_worker_cache_hits",
                "Conversations answered from the score cache, not the model.",
                m.cache_hits(),
            ),
            ("rmscore_worker_tokens_scored", "Real (unpadded) tokens through the model.", m.tokens_scored()),
            ("rmscore_worker_padded_tokens", "Tokens the model computed, padding included.", m.padded_tokens()),
            ("rmscore_worker_batches", "Micro-batches through the model.", m.batches()),
            ("rmscore_worker_oom_splits", "Micro-batches halved after running out of memory.", engine.stats.oom_splits),
        )
        for name, doc, count in counters:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(values, count)
            yield c

        gauges = (
            (
                "rmscore_worker_padding_efficiency",
                "Real / padded tokens since start-up (1 means no padding; rate the two counters for a window).",
                m.padding_efficiency(),
            ),
            ("rmscore_worker_tokens_per_second", "Real tokens per second over the last minute.", m.throughput.rate()),
            ("rmscore_worker_model_load_seconds", "Seconds to load and warm up the model at start-up.", m.load_seconds),
            (
                "rmscore_worker_max_batch_tokens",
                "Token budget per micro-batch (lowered after out-of-memory).",
                engine.max_batch_tokens,
            ),
            ("rmscore_worker_busy", "1 while a chunk is in hand.", 1 if rt.current or rt.held else 0),
            ("rmscore_worker_chunks_in_hand", "Chunks leased: being prepared, scored or stored.", len(rt.held)),
        )
        for name, doc, value in gauges:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, value)
            yield g

        gpu = _gpu_memory(engine.device)
        if gpu is not None:
            g = GaugeMetricFamily(
                "rmscore_worker_gpu_memory_bytes", "CUDA memory of the worker's device.", labels=[*labels, "kind"]
            )
            for kind, value in gpu.items():
                g.add_metric([*values, kind], value)
            yield g


def _gpu_memory(device: str) -> dict[str, int] | None:
    try:
        mem = cuda_memory(device)
    except Exception:  # noqa: BLE001 - a scrape must answer even if the driver does not
        return None
    if mem is None:
        return None
    return {"total": mem.total, "allocated": mem.allocated, "reserved": mem.reserved}


def time_batches(engine: Scorer, histogram: Histogram) -> bool:
    """Observe each micro-batch's forward pass in `histogram`. False if the engine has no batch hook."""
    if not hasattr(engine, "on_batch"):
        log.warning("metrics: engine has no on_batch hook; batch latency will stay empty")
        return False
    # An out-of-memory batch raises before the hook: only batches actually scored are observed.
    engine.on_batch = lambda rows, width, tokens, seconds: histogram.observe(seconds)
    return True


def build_registry(monitor: Monitor) -> CollectorRegistry:
    """A registry of this worker's metrics (its own, so nothing else in the process leaks in)."""
    registry = CollectorRegistry()
    registry.register(_WorkerCollector(monitor))
    batch_seconds = Histogram(
        "rmscore_worker_batch_seconds",
        "Forward-pass seconds per micro-batch.",
        ["worker", "model"],
        registry=registry,
        buckets=BATCH_SECONDS_BUCKETS,
    )
    rt = monitor.runtime
    time_batches(rt.engine, batch_seconds.labels(rt.name, rt.engine.name))
    if rt.online is not None:
        time_online(rt.online.stats, registry, rt.name, rt.engine.name)
    return registry


def time_online(stats: OnlineStats, registry: CollectorRegistry, worker: str, model: str) -> None:
    """Online requests' queue wait and latency (the API's send to the worker's reply), as histograms."""
    hists = [
        Histogram(name, doc, ["worker", "model"], registry=registry, buckets=ONLINE_SECONDS_BUCKETS).labels(
            worker, model
        )
        for name, doc in (
            ("rmscore_worker_online_wait_seconds", "Seconds an online request waited before its scoring began."),
            ("rmscore_worker_online_latency_seconds", "Seconds from an online request's send to its reply."),
        )
    ]
    wait, latency = hists

    def observe(w: float, lat: float) -> None:
        wait.observe(w)
        latency.observe(lat)

    stats.on_request = observe


def serve(monitor: Monitor, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other hosts
    """Serve `/metrics` on `port` from a daemon thread."""
    start_http_server(port, addr=addr, registry=build_registry(monitor))
    log.info("metrics on :%d/metrics", port)
