"""Writing job records straight into Redis, past the client, as any other writer could.

The one place the tests name the keys of a job's record: when the key layout changes, only
`job_key` and `write_raw_job` change.
"""

from __future__ import annotations

import time

from arq.connections import ArqRedis

from config.queues import QueueName
from workers.store.keys import Keys
from workers.store.priority import Priority, job_score

# Far beyond any test, as the client's own TTL is.
RECORD_TTL_MS = 600_000


def job_key(keys: Keys, queue: QueueName, job_id: str) -> str:
    """The key of a job's record, in its queue's keys."""
    return keys.of(queue).job(job_id)


async def write_raw_job(
    redis: ArqRedis, keys: Keys, queue: QueueName, job_id: str, raw: bytes, *, delay_s: float = 0
) -> None:
    """Store `raw` as the job's record and queue its id, ready now (or after `delay_s`), with
    a wake token so an idle worker starts it at once."""
    now = int(time.time() * 1000)
    score = job_score(Priority.NORMAL, now + int(delay_s * 1000), now)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(job_key(keys, queue, job_id), raw, px=RECORD_TTL_MS)
        pipe.zadd(keys.of(queue).queue, {job_id: score})
        pipe.lpush(keys.of(queue).wake, "1")
        await pipe.execute()


def result_key(keys: Keys, queue: QueueName, job_id: str) -> str:
    """The key of a finished job's result, in its queue's keys."""
    return keys.of(queue).result(job_id)


async def write_raw_result(
    redis: ArqRedis, keys: Keys, queue: QueueName, job_id: str, raw: bytes
) -> None:
    """Store `raw` as the job's result, indexed among the queue's finished jobs."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(result_key(keys, queue, job_id), raw, px=RECORD_TTL_MS)
        pipe.zadd(keys.of(queue).results, {job_id: time.time() * 1000})
        await pipe.execute()


async def write_raw_dead_letter(
    redis: ArqRedis, keys: Keys, queue: QueueName, job_id: str, raw: bytes
) -> None:
    """Store `raw` as the job's dead letter, listed among the queue's."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.of(queue).dead_record(job_id), raw, px=RECORD_TTL_MS)
        pipe.zadd(keys.of(queue).dead_index, {job_id: time.time()})
        await pipe.execute()


async def write_raw_progress(
    redis: ArqRedis, keys: Keys, queue: QueueName, job_id: str, raw: bytes
) -> None:
    await redis.set(keys.of(queue).progress(job_id), raw, px=RECORD_TTL_MS)
