"""Prometheus metrics of one process: the jobs it enqueued, started and finished, per queue.

Each `WorkerMetrics` has its own `CollectorRegistry` (nothing is registered at import, and two
supervisors in one test process never share counters); the Runtime creates one per worker
process and the metrics server (metrics_server.py) exposes it. The numbers every process
shares (queue lengths, lifetime counters in Redis) are the admin API's, in cluster_metrics.py,
under `postroom_queue_*`.

Updates cost no Redis round trip and little CPU: the labelled children of each queue and task
are looked up once and cached, so a job costs a dict lookup and a few locked increments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from config.queues import QueueName

# Seconds; tasks run from milliseconds (a send) to minutes (a batch, the cleanup).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Seconds from when a job could start (enqueued, or due when delayed or retrying) to its start.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class EnqueueMetrics:
    """`postroom_jobs_enqueued_total{queue,task}`: jobs this process wrote (new ids only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
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


@dataclass(frozen=True, slots=True)
class TaskMetrics:
    """The labelled children of one (queue, task), resolved once."""

    started: Counter
    completed: Counter
    failed: Counter
    retried: Counter
    dead_lettered: Counter
    cancelled: Counter
    duration: Histogram
    latency: Histogram
    in_flight: Gauge


@dataclass(frozen=True, slots=True)
class QueueGauges:
    """What the supervisor's maintenance loop sets for a queue, about every second."""

    depth: Gauge
    heartbeat: Gauge


class WorkerMetrics:
    """Every metric of one worker process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        labels = ("queue", "task")
        self.enqueue = EnqueueMetrics(r)
        self._started = Counter("postroom_jobs_started", "Runs started.", labels, registry=r)
        self._completed = Counter(
            "postroom_jobs_completed", "Runs that succeeded.", labels, registry=r
        )
        self._failed = Counter(
            "postroom_jobs_failed",
            "Runs that failed (retried, dead-lettered or failed by arq).",
            labels,
            registry=r,
        )
        self._retried = Counter(
            "postroom_jobs_retried", "Failed runs scheduled to run again.", labels, registry=r
        )
        self._dead_lettered = Counter(
            "postroom_jobs_dead_lettered", "Jobs moved to the dead letters.", labels, registry=r
        )
        self._cancelled = Counter(
            "postroom_jobs_cancelled", "Runs stopped at a user's request.", labels, registry=r
        )
        self._duration = Histogram(
            "postroom_job_duration_seconds",
            "How long a run took, whatever its outcome (runs put back at shutdown excluded).",
            labels,
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self._latency = Histogram(
            "postroom_job_start_latency_seconds",
            "From when a job could start (enqueued, or due if delayed or retrying) to its start.",
            labels,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._in_flight = Gauge(
            "postroom_jobs_in_flight", "Jobs running in this process.", ("queue",), registry=r
        )
        self._depth = Gauge(
            "postroom_queue_depth",
            "Jobs ready to start and not running, as this worker last read (all workers').",
            ("queue",),
            registry=r,
        )
        self._heartbeat = Gauge(
            "postroom_worker_heartbeat_timestamp_seconds",
            "When this worker last renewed its queue's leases and read its pause flag.",
            ("queue",),
            registry=r,
        )
        self._tasks: dict[tuple[QueueName, str], TaskMetrics] = {}
        self._queues: dict[QueueName, QueueGauges] = {}

    def task(self, queue: QueueName, task: str) -> TaskMetrics:
        metrics = self._tasks.get((queue, task))
        if metrics is None:
            labels = (queue.value, task)
            metrics = self._tasks[(queue, task)] = TaskMetrics(
                started=self._started.labels(*labels),
                completed=self._completed.labels(*labels),
                failed=self._failed.labels(*labels),
                retried=self._retried.labels(*labels),
                dead_lettered=self._dead_lettered.labels(*labels),
                cancelled=self._cancelled.labels(*labels),
                duration=self._duration.labels(*labels),
                latency=self._latency.labels(*labels),
                in_flight=self._in_flight.labels(queue.value),
            )
        return metrics

    def queue(self, queue: QueueName) -> QueueGauges:
        gauges = self._queues.get(queue)
        if gauges is None:
            gauges = self._queues[queue] = QueueGauges(
                self._depth.labels(queue.value), self._heartbeat.labels(queue.value)
            )
        return gauges

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
