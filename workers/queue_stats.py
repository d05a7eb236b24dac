"""A queue's numbers, from Redis, so every process (and the admin API) sees the same."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis
from pydantic import BaseModel

from config.queues import QueueName
from workers.keys import Keys


class QueueStats(BaseModel):
    """Counts now (waiting ... paused) and since the queue's counters began (completed ...).

    `failed` counts failed tries (retried or dead-lettered); `dead_lettered_now` is how many
    dead letters the queue holds today, `dead_lettered` how many jobs were ever dead-lettered.
    """

    queue: QueueName
    waiting: int
    active: int
    delayed: int
    paused: bool
    dead_lettered_now: int
    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0


async def read_queue_stats(redis: ArqRedis, keys: Keys, queue: QueueName) -> QueueStats:
    [stats] = await read_queues_stats(redis, keys, [queue])
    return stats


# The replies read per queue, in the order `_stats` takes them.
_READS_PER_QUEUE = 6


async def read_queues_stats(
    redis: ArqRedis, keys: Keys, queues: Sequence[QueueName]
) -> list[QueueStats]:
    """Many queues' numbers in one round trip, in the order asked."""
    now = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            # Running jobs stay in the queue (with a ready score) until they finish.
            qk = keys.of(queue)
            pipe.zcount(qk.queue, "-inf", now)
            pipe.zcount(qk.queue, f"({now}", "+inf")
            pipe.zcount(qk.active, now, "+inf")
            pipe.exists(qk.paused)
            pipe.zcard(qk.dead_index)
            pipe.hgetall(qk.stats)
        replies = await pipe.execute()
    return [
        _stats(queue, replies[i * _READS_PER_QUEUE : (i + 1) * _READS_PER_QUEUE])
        for i, queue in enumerate(queues)
    ]


def _stats(queue: QueueName, replies: Sequence[Any]) -> QueueStats:
    ready, delayed, active, paused, dead_now, counters = replies
    return QueueStats(
        queue=queue,
        waiting=max(ready - active, 0),
        active=active,
        delayed=delayed,
        paused=bool(paused),
        dead_lettered_now=dead_now,
        **{name.decode(): int(value) for name, value in counters.items()},
    )
