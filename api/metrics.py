"""Prometheus metrics: request latency (recorded per request) and job-store gauges (read at scrape).

Each app has its own registry, so several apps in one process (tests) never clash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rmscore import keys

if TYPE_CHECKING:
    from api.state import ApiState

log = logging.getLogger("api")


class _StoreCollector:
    def __init__(self, state: ApiState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        from db.cache import rows_by_model
        from db.models import JOB_STATUSES
        from db.scores import jobs_by_status, lines_by_outcome

        try:
            counts = jobs_by_status(self.state.db)
            lines = lines_by_outcome(self.state.db)
            cache_rows = rows_by_model(self.state.db)
        except Exception as e:  # noqa: BLE001 - a scrape must not fail because the database is down
            log.warning("metrics: database unavailable: %s", e)
        else:
            g = GaugeMetricFamily("rmscore_jobs", "Jobs by status.", labels=["status"])
            for status in JOB_STATUSES:
                g.add_metric([status], counts.get(status, 0))
            yield g
            g = GaugeMetricFamily("rmscore_lines", "Lines with an outcome, over all stored jobs.", labels=["outcome"])
            for outcome, n in lines.items():
                g.add_metric([outcome], n)
            yield g
            g = GaugeMetricFamily(
                "rmscore_score_cache_rows",
                "Score cache rows per model (bounded by RMSCORE_CACHE_MAX_ROWS / RMSCORE_CACHE_MAX_AGE).",
                labels=["model"],
            )
            for model, n in sorted(cache_rows.items()):
                g.add_metric([model], n)
            yield g
        try:
            r = self.state.redis
            names = sorted(self.state.settings.model_names)
            with r.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.llen(keys.score_queue(name))
                    pipe.llen(keys.online_queue(name))  # shown as queue="sync", as before the online lane
                depths = pipe.execute()
        except Exception as e:  # noqa: BLE001
            log.warning("metrics: broker unavailable: %s", e)
            return
        g = GaugeMetricFamily("rmscore_queue_depth", "Messages waiting in a model's queue.", labels=["model", "queue"])
        for i, name in enumerate(names):
            g.add_metric([name, "batch"], depths[2 * i])
            g.add_metric([name, "sync"], depths[2 * i + 1])
        yield g


class Metrics:
    def __init__(self, state: ApiState) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "rmscore_api_request_seconds",
            "API request latency (to the last byte of the response).",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.registry.register(_StoreCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Times each HTTP request; labels use the route template (`/v1/jobs/{job_id}`), not the path."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], template, str(status)).observe(time.perf_counter() - t0)
