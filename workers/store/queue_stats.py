"""A queue's numbers, from Redis, so every process (and the admin API) sees the same."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis
from pydantic import BaseModel

from config.queues import QueueName
from workers.store.keys import Keys


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
    deferred: int = 0  # runs a rate limit held back (no try spent)


async def read_queue_stats(redis: ArqRedis, keys: Keys, queue: QueueName) -> QueueStats:
    [stats] = await read_queues_stats(redis, keys, [queue])
    return stats


# The replies read per partition, in the order `_stats` takes them.
_READS_PER_PARTITION = 5


async def read_queues_stats(
    redis: ArqRedis, keys: Keys, queues: Sequence[QueueName]
) -> list[QueueStats]:
    """Many queues' numbers in one round trip, in the order asked; a partitioned queue's
    summed over its partitions (`read_partition_stats` gives each partition's)."""
    return [sum_stats(queue, parts) for queue, parts in await _read(redis, keys, queues)]


async def read_partition_stats(redis: ArqRedis, keys: Keys, queue: QueueName) -> list[QueueStats]:
    """Each partition's numbers of `queue` (one entry for an unpartitioned queue)."""
    [(_, parts)] = await _read(redis, keys, [queue])
    return parts


async def _read(
    redis: ArqRedis, keys: Keys, queues: Sequence[QueueName]
) -> list[tuple[QueueName, list[QueueStats]]]:
    now = int(time.time() * 1000)
    partitions = {queue: keys.partitions_of(queue) for queue in queues}
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.exists(keys.of(queue).paused)
            for qk in partitions[queue]:
                # Running jobs stay in the queue (with a ready score) until they finish.
                pipe.zcount(qk.queue, "-inf", now)
                pipe.zcount(qk.queue, f"({now}", "+inf")
                pipe.zcount(qk.active, now, "+inf")
                pipe.zcard(qk.dead_index)
                pipe.hgetall(qk.stats)
        replies = iter(await pipe.execute())
    read = []
    for queue in queues:
        paused = bool(next(replies))
        parts = [
            _stats(queue, paused, [next(replies) for _ in range(_READS_PER_PARTITION)])
            for _ in partitions[queue]
        ]
        read.append((queue, parts))
    return read


def sum_stats(queue: QueueName, parts: Sequence[QueueStats]) -> QueueStats:
    """A queue's numbers from its partitions': every count summed (the pause flag is one)."""
    counts = [part.model_dump(exclude={"queue", "paused"}) for part in parts]
    summed = {name: sum(c[name] for c in counts) for name in counts[0]}
    return QueueStats(queue=queue, paused=parts[0].paused, **summed)


def _stats(queue: QueueName, paused: bool, replies: Sequence[Any]) -> QueueStats:
    ready, delayed, active, dead_now, counters = replies
    return QueueStats(
        queue=queue,
        waiting=max(ready - active, 0),
        active=active,
        delayed=delayed,
        paused=paused,
        dead_lettered_now=dead_now,
        **{name.decode(): int(value) for name, value in counters.items()},
    )
