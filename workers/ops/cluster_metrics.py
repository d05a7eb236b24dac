"""Cluster-wide metrics from Redis, for the admin API's `GET /metrics`.

Every process reads the same numbers here (queue_stats.py), so one scrape of the admin API
describes the whole deployment; a worker's own /metrics (metrics.py) only what it ran. Names
are `postroom_queue_*`, apart from the workers' `postroom_jobs_*`, so they never collide.
Each scrape renders into a fresh registry: nothing is kept between scrapes or at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from config.queues import QueueName
from workers.client import PostroomClient
from workers.ops.rate_limits import RateLimitInfo, read_rate_limits
from workers.store.queue_stats import QueueStats

# (metric name, QueueStats field, help): numbers now, as gauges.
GAUGES = (
    ("postroom_queue_waiting", "waiting", "Jobs ready to start, not running."),
    ("postroom_queue_active", "active", "Jobs running (holding a live lease)."),
    ("postroom_queue_delayed", "delayed", "Jobs waiting for their time (delay, retry backoff)."),
    ("postroom_queue_paused", "paused", "1 while the queue is paused."),
    ("postroom_queue_dead_letters", "dead_lettered_now", "Dead letters the queue holds now."),
)
# Since the queue's counters began (they live in Redis), as counters.
COUNTERS = (
    ("postroom_queue_completed", "completed", "Jobs completed."),
    ("postroom_queue_failed", "failed", "Failed tries (retried or dead-lettered)."),
    ("postroom_queue_retried", "retried", "Failed tries scheduled to run again."),
    ("postroom_queue_dead_lettered", "dead_lettered", "Jobs moved to the dead letters."),
    ("postroom_queue_cancelled", "cancelled", "Jobs cancelled by a user."),
    ("postroom_queue_deferred", "deferred", "Runs a rate limit deferred (no try spent)."),
)
# (metric name, RateLimitInfo field, help), labelled by the limit's name.
RATE_GAUGES = (
    ("postroom_rate_limit_per_second", "per_second", "The limit, in starts per second."),
    ("postroom_rate_limit_rate", "rate", "Starts per second over about the last 5 seconds."),
    ("postroom_rate_limit_at_limit", "at_limit", "1 while the limit holds starts back."),
    ("postroom_rate_limit_waiting", "waiting", "Ready jobs of the queue the limit holds back."),
    ("postroom_rate_limit_held", "held", "Jobs deferred to a reserved start slot."),
)


class _Snapshot(Collector):
    """One scrape's numbers, read beforehand (collect() must not do I/O on the event loop)."""

    def __init__(
        self, stats: list[QueueStats], workers: dict[str, int], limits: list[RateLimitInfo]
    ) -> None:
        self.stats = stats
        self.workers = workers
        self.limits = limits

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for name, field, text in GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["queue"])
            for stats in self.stats:
                gauge.add_metric([stats.queue.value], float(getattr(stats, field)))
            yield gauge
        for name, field, text in COUNTERS:
            counter = CounterMetricFamily(name, text, labels=["queue"])
            for stats in self.stats:
                counter.add_metric([stats.queue.value], float(getattr(stats, field)))
            yield counter
        workers = GaugeMetricFamily(
            "postroom_queue_workers", "Live worker processes serving the queue.", labels=["queue"]
        )
        for stats in self.stats:
            workers.add_metric([stats.queue.value], float(self.workers.get(stats.queue.value, 0)))
        yield workers
        for name, field, text in RATE_GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["limit"])
            for info in self.limits:
                gauge.add_metric([info.name], float(getattr(info, field)))
            yield gauge
        throttled = CounterMetricFamily(
            "postroom_rate_limit_throttled",
            "Starts that waited for the limit (claims cut short, runs waiting or deferred).",
            labels=["limit"],
        )
        for info in self.limits:
            throttled.add_metric([info.name], float(info.throttled))
        yield throttled


async def render_cluster_metrics(
    client: PostroomClient, queues: Iterable[QueueName] = tuple(QueueName)
) -> bytes:
    """The Prometheus text of every queue's QueueStats and live worker count (from the
    workers' health keys, see worker_health.py), and of every rate limit (rate_limits.py)."""
    chosen = list(queues)
    stats, workers, limits = await asyncio.gather(
        asyncio.gather(*(client.queue_stats(queue) for queue in chosen)),
        client.live_workers(chosen),
        read_rate_limits(client),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(list(stats), workers, limits))
    return generate_latest(registry)
