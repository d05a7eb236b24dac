"""Which queues have a live worker: every queue worker refreshes a health key per process
(queue_worker.HEALTH_INTERVAL) that expires soon after its worker stops refreshing it."""

from __future__ import annotations

from collections.abc import Iterable

from arq.connections import ArqRedis

from config.queues import QueueName
from workers.keys import Keys


async def live_workers(redis: ArqRedis, keys: Keys, queues: Iterable[QueueName]) -> dict[str, int]:
    """How many worker processes serve each queue right now, by queue name."""
    counts: dict[str, int] = {}
    for queue in queues:
        pattern = keys.health(queue, "*")
        counts[queue.value] = len([key async for key in redis.scan_iter(match=pattern, count=1000)])
    return counts
