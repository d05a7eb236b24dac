"""Every configured rate limit as the admin API, its metrics and the dashboard show it.

A queue's limit (`POSTROOM_QUEUES__<QUEUE>__RATE_LIMIT`), each named one
(`POSTROOM_RATE_LIMITS__<NAME>`) and each registered task's own (`@task(rate_limit=...)`, as
`task:<name>`): the limit, the rate of the last few seconds, whether it holds jobs back now,
and how many jobs wait for it, all read from the buckets in Redis, so every process sees the
same numbers.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from config.queues import QueueName
from config.rate_limits import RateLimit
from workers.client import PostroomClient
from workers.store.rate_limit import RateStatus, read_rate


class RateLimitInfo(BaseModel):
    """One limit now. `throttled` counts starts that had to wait (claims the limit cut short,
    runs that waited for their slot or were deferred to it) in the bucket's life (an hour
    past its last use); `waiting` is the queue's ready jobs the limit holds back now, `held`
    the jobs deferred to a reserved slot of a named limit."""

    name: str
    queue: QueueName | None = None
    limit: str
    per_second: float
    rate: float
    at_limit: bool
    throttled: int
    waiting: int = 0
    held: int = 0


def queue_limit_name(queue: QueueName) -> str:
    return f"queue:{queue.value}"


async def read_rate_limits(client: PostroomClient) -> list[RateLimitInfo]:
    """Each configured limit's state: queues' first, then named ones, then the client's
    registered tasks' own."""
    settings, keys, tasks = client.settings, client.keys, client.tasks
    queues = [(q, c.rate_limit) for q, c in settings.queues.items() if c.rate_limit is not None]
    named: dict[str, RateLimit] = dict(settings.rate_limits)
    for task in tasks:
        if task.rate_limit is not None:
            named.setdefault(f"task:{task.name}", task.rate_limit)
    queue_reads = [read_rate(client.redis, keys.of(q).rate_bucket, limit) for q, limit in queues]
    named_reads = [
        read_rate(client.redis, keys.rate_limit(n).bucket, limit, keys.rate_limit(n).held)
        for n, limit in named.items()
    ]
    statuses: list[RateStatus] = list(await asyncio.gather(*queue_reads, *named_reads))
    stats = await client.queues_stats([q for q, _ in queues]) if queues else []
    infos = []  # statuses: the queues' (as many as `stats`), then the named limits'
    for (queue, _), status, queue_stats in zip(queues, statuses, stats, strict=False):
        waiting = queue_stats.waiting if status.at_limit else 0
        infos.append(_info(queue_limit_name(queue), status, queue=queue, waiting=waiting))
    for name, status in zip(named, statuses[len(queues) :], strict=True):
        infos.append(_info(name, status, held=status.held))
    return infos


def _info(name: str, status: RateStatus, **extra: object) -> RateLimitInfo:
    return RateLimitInfo.model_validate(
        {
            "name": name,
            "limit": status.limit,
            "per_second": status.per_second,
            "rate": status.rate,
            "at_limit": status.at_limit,
            "throttled": status.throttled,
            **extra,
        }
    )
