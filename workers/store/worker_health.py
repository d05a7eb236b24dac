"""Which queues have a live worker: every queue worker refreshes a health key per process
(queue_worker.HEALTH_INTERVAL) that expires soon after its worker stops refreshing it."""

from __future__ import annotations

from collections.abc import Iterable

from arq.connections import ArqRedis

from config.queues import QueueName
from workers.store.keys import Keys


async def live_workers(redis: ArqRedis, keys: Keys, queues: Iterable[QueueName]) -> dict[str, int]:
    """How many worker processes serve each queue right now, by queue name.

    One SCAN for all queues: SCAN walks the whole keyspace whatever its pattern, so a SCAN
    per queue would walk it once per queue."""
    counts = {queue.value: 0 for queue in queues}
    prefix = keys.health_prefix()
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        # `<prefix><queue>:<worker>`; queue names hold no ":".
        queue = key.decode()[len(prefix) :].split(":", 1)[0]
        if queue in counts:
            counts[queue] += 1
    return counts
