"""Prometheus metrics of one process: the jobs it enqueued, started and finished, per queue.

Each `WorkerMetrics` has its own `CollectorRegistry` (nothing is registered at import, and two
supervisors in one test process never share counters); the Runtime creates one per worker
process and the metrics server (metrics_server.py) exposes it. The numbers every process
shares (queue lengths, lifetime counters in Redis) are the admin API's, in cluster_metrics.py,
under `postroom_queue_*`.

The per-job numbers cost no Redis round trip and little CPU: each (queue, task) keeps plain
counts (`JobCounts`, looked up once per run) that the event loop alone writes, and a custom
collector turns them into Prometheus families when scraped (prometheus_client's documented
pattern for numbers kept elsewhere). prometheus_client's own Counter and Histogram take a lock
per update: with them a run's bookkeeping cost 8 us, with these counts 2.4 us (measured).
The queue gauges are plain numbers too, so prometheus_client (2.5 MiB with the HTTP server's
modules) is imported only when the registry is first read: by the metrics server, a render,
or a task's client counting its enqueues. A worker without `metrics_port` never loads it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from config.queues import QueueName

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

# Seconds; tasks run from milliseconds (a send) to minutes (a batch, the cleanup).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Seconds from when a job could start (enqueued, or due when delayed or retrying) to its start.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# (metric name without _total, JobCounts field, help)
COUNTERS = (
    ("postroom_jobs_started", "started", "Runs started (each try counts)."),
    ("postroom_jobs_completed", "completed", "Runs that succeeded."),
    ("postroom_jobs_failed", "failed", "Runs that failed (retried, dead-lettered or by arq)."),
    ("postroom_jobs_retried", "retried", "Failed runs scheduled to run again."),
    ("postroom_jobs_dead_lettered", "dead_lettered", "Jobs moved to the dead letters."),
    ("postroom_jobs_cancelled", "cancelled", "Runs stopped at a user's request."),
    (
        "postroom_jobs_deferred",
        "deferred",
        "Runs a rate limit held back (a named limit, or the provider's 429): no try spent.",
    ),
)
# (metric name, QueueGauges field, help): set by the supervisor about every second.
GAUGES = (
    (
        "postroom_queue_depth",
        "depth",
        "Jobs ready to start and not running, as this worker last read (all workers').",
    ),
    (
        "postroom_worker_heartbeat_timestamp_seconds",
        "heartbeat",
        "When this worker last renewed its queue's leases and read its pause flag.",
    ),
)
HISTOGRAMS = (
    (
        "postroom_job_duration_seconds",
        "duration",
        "How long a run took, whatever its outcome (runs put back at shutdown excluded).",
    ),
    (
        "postroom_job_start_latency_seconds",
        "latency",
        "From when a job could start (enqueued, or due if delayed or retrying) to its start.",
    ),
)


class Buckets:
    """A histogram's counts: `counts[i]` observations in (bounds[i-1], bounds[i]], the last
    one above every bound; cumulated only when scraped."""

    __slots__ = ("bounds", "counts", "labels", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        # The `le` labels as prometheus_client writes them: 0.005, 1.0, ..., +Inf.
        self.labels = [repr(float(bound)) for bound in bounds] + ["+Inf"]

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        total, buckets = 0, []
        for label, count in zip(self.labels, self.counts, strict=True):
            total += count
            buckets.append((label, float(total)))
        return buckets


@dataclass(slots=True)
class JobCounts:
    """One (queue, task)'s runs in this process."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    deferred: int = 0
    duration: Buckets = field(default_factory=lambda: Buckets(DURATION_BUCKETS))
    latency: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))


class Level:
    """A gauge's value, read when scraped: what `Gauge.set` would hold, without its lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def set_to_current_time(self) -> None:
        self.value = time.time()


@dataclass(slots=True)
class QueueGauges:
    """A queue's numbers now: in flight per run, the rest set by the supervisor each second."""

    depth: Level = field(default_factory=Level)
    heartbeat: Level = field(default_factory=Level)
    in_flight: int = 0


class EnqueueMetrics:
    """`postroom_jobs_enqueued_total{queue,task}`: jobs this process wrote (new ids only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter  # the registry's owner has loaded it already

        self._enqueued = Counter(
            "postroom_jobs_enqueued",
            "Jobs this process enqueued (an id that was already taken is not counted).",
            ("queue", "task"),
            registry=registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}

    def enqueued(self, jobs: Iterable[tuple[QueueName, str]]) -> None:
        """Count each (queue, task name) written."""
        children = self._children
        for queue, task in jobs:
            child = children.get((queue, task))
            if child is None:
                child = children[(queue, task)] = self._enqueued.labels(queue.value, task)
            child.inc()


class WorkerMetrics:
    """Every metric of one worker process, in its own registry (made on first use)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._registry = registry
        self._enqueue: EnqueueMetrics | None = None
        self._jobs: dict[tuple[QueueName, str], JobCounts] = {}
        self._queues: dict[QueueName, QueueGauges] = {}
        # Starts this process held back, per rate limit (`queue:<queue>`, a named limit).
        self.rate_waits: dict[str, int] = {}

    @property
    def registry(self) -> CollectorRegistry:
        """The registry holding every metric; importing prometheus_client the first time."""
        return self._export()[0]

    @property
    def enqueue(self) -> EnqueueMetrics:
        """`postroom_jobs_enqueued_total`, for a task's client (batch-send's fan-out)."""
        return self._export()[1]

    def _export(self) -> tuple[CollectorRegistry, EnqueueMetrics]:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry()
        if self._enqueue is None:
            self._enqueue = EnqueueMetrics(self._registry)
            # A collector by its `collect` (all a registry calls), not by subclassing
            # prometheus_client's Collector: that would import the library with this module.
            self._registry.register(cast("Collector", self))
        return self._registry, self._enqueue

    def task(self, queue: QueueName, task: str) -> JobCounts:
        counts = self._jobs.get((queue, task))
        if counts is None:
            counts = self._jobs[(queue, task)] = JobCounts()
        return counts

    def queue(self, queue: QueueName) -> QueueGauges:
        gauges = self._queues.get(queue)
        if gauges is None:
            gauges = self._queues[queue] = QueueGauges()
        return gauges

    def collect(self) -> Iterator[Metric]:
        """The families, from the counts (called by the scrape, in its thread)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        queues = list(self._queues.items())  # one step under the GIL: the loop may add one
        for name, attribute, text in GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["queue"])
            for queue, gauges in queues:
                gauge.add_metric([queue.value], getattr(gauges, attribute).value)
            yield gauge
        jobs = list(self._jobs.items())
        labels = ["queue", "task"]
        for name, attribute, text in COUNTERS:
            counter = CounterMetricFamily(name, text, labels=labels)
            for (queue, task), counts in jobs:
                counter.add_metric([queue.value, task], float(getattr(counts, attribute)))
            yield counter
        for name, attribute, text in HISTOGRAMS:
            histogram = HistogramMetricFamily(name, text, labels=labels)
            for (queue, task), counts in jobs:
                buckets: Buckets = getattr(counts, attribute)
                histogram.add_metric([queue.value, task], buckets.cumulative(), buckets.sum)
            yield histogram
        in_flight = GaugeMetricFamily(
            "postroom_jobs_in_flight", "Jobs running in this process.", labels=["queue"]
        )
        for queue, gauges in queues:
            in_flight.add_metric([queue.value], float(gauges.in_flight))
        yield in_flight
        waits = CounterMetricFamily(
            "postroom_rate_limit_waits",
            "Starts this process held back for a rate limit: claims cut short (queue limits), "
            "runs that waited for their slot or were deferred to it (named limits).",
            labels=["limit"],
        )
        for name, count in list(self.rate_waits.items()):
            waits.add_metric([name], float(count))
        yield waits

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
