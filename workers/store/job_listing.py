"""A queue's jobs by state, a page at a time, and cleaning out old finished ones.

Read from the keys the runtime keeps (see keys.py): the queue's sorted set (ready jobs in
their priority bands, waiting jobs scored by their time, priority.py), the active set of
running jobs, the result index and the dead-letter index. The admin API and the CLI both
list and clean through here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal, get_args

from arq.connections import ArqRedis
from pydantic import BaseModel

from config.queues import QueueName
from workers.store.dead_letter import DeadLetterStore
from workers.store.indexed_delete import delete_indexed
from workers.store.job_status import JobInfo, JobState, finished_state, read_job_infos
from workers.store.keys import Keys, QueueKeys
from workers.store.scripts import RedisClient
from workers.store.sealing import NO_SEALER, PayloadSealer

# Keys read per MGET when a listing has to look at every job of a state.
CHUNK = 500

CleanState = Literal["complete", "failed", "cancelled", "dead-lettered"]
CLEAN_STATES: tuple[CleanState, ...] = get_args(CleanState)


class JobPage(BaseModel):
    """One page of a listing; `total` counts every job of the state, not just this page."""

    queue: QueueName
    state: JobState
    total: int
    offset: int
    limit: int
    items: list[JobInfo]


async def list_jobs(
    redis: ArqRedis,
    keys: Keys,
    queue: QueueName,
    state: JobState,
    *,
    offset: int = 0,
    limit: int = 50,
    sealer: PayloadSealer = NO_SEALER,
) -> JobPage:
    """`queue`'s jobs in `state`: queued in the order they will start, running, deferred and
    retrying by when they are due, finished and dead-lettered newest first (their sealed
    values opened with `sealer`). A job that moved on to another state between the page's
    read and its records' (a run that ended meanwhile) is left out: it is listed there."""
    state = JobState(state)
    ids, total = await _page(redis, keys, queue, state, offset, limit)
    infos = await read_job_infos(redis, keys, ids, queue, sealer)
    items = [info for info in infos if info is not None and info.state is state]
    total -= len(ids) - len(items)
    return JobPage(queue=queue, state=state, total=total, offset=offset, limit=limit, items=items)


async def _page(
    redis: ArqRedis, keys: Keys, queue: QueueName, state: JobState, offset: int, limit: int
) -> tuple[list[str], int]:
    """A page of the state's jobs; a partitioned queue's partitions are listed one after
    another, each in the state's order."""
    ids: list[str] = []
    seen = 0
    for qk in keys.partitions_of(queue):
        start = max(offset - seen, 0)
        found, total = await _partition_page(redis, qk, state, start, limit - len(ids))
        ids += found
        seen += total
    return ids, seen


async def _partition_page(
    redis: ArqRedis, qk: QueueKeys, state: JobState, offset: int, limit: int
) -> tuple[list[str], int]:
    now = int(time.time() * 1000)
    if state is JobState.RUNNING:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcount(qk.active, now, "+inf")
            pipe.zrangebyscore(qk.active, now, "+inf", start=offset, num=limit)
            total, ids = await pipe.execute()
        return _decoded(ids), int(total)
    if state is JobState.QUEUED:
        return await _queued(redis, qk, now, offset, limit)
    if state in (JobState.DEFERRED, JobState.RETRYING):
        ids = _decoded(await redis.zrangebyscore(qk.queue, f"({now}", "+inf"))
        tries = await _mget(redis, [qk.tries(i) for i in ids])
        retrying = state is JobState.RETRYING
        matching = [i for i, t in zip(ids, tries, strict=True) if bool(t and int(t)) == retrying]
        return matching[offset : offset + limit], len(matching)
    if state is JobState.DEAD_LETTERED:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(qk.dead_index)
            pipe.zrevrange(qk.dead_index, offset, offset + max(limit, 1) - 1)
            total, ids = await pipe.execute()
        return _decoded(ids)[: max(limit, 0)], int(total)
    matching = [i for i, s in await _finished(redis, qk, "+inf") if s is state]
    return matching[offset : offset + limit], len(matching)


async def _queued(
    redis: ArqRedis, qk: QueueKeys, now: int, offset: int, limit: int
) -> tuple[list[str], int]:
    """Ready jobs not running. Running jobs keep their ready score until they finish, so the
    page's start rank skips every running job ranked before it."""
    running = _decoded(await redis.zrangebyscore(qk.active, now, "+inf"))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(qk.queue, "-inf", now)
        for job_id in running:
            pipe.zrank(qk.queue, job_id)
        ready, *ranks = await pipe.execute()
    skipped = sorted(r for r in ranks if r is not None and r < ready)
    start = offset
    for rank in skipped:
        if rank > start:
            break
        start += 1
    ids = await redis.zrangebyscore(qk.queue, "-inf", now, start=start, num=limit + len(skipped))
    busy = set(running)
    page = [i for i in _decoded(ids) if i not in busy][:limit]
    return page, max(int(ready) - len(skipped), 0)


async def _finished(
    redis: RedisClient, qk: QueueKeys, until_ms: float | str
) -> list[tuple[str, JobState | None]]:
    """The queue's kept results finished up to `until_ms`, newest first, with their state
    (None for a result already expired but still indexed). A dead-lettered job's failed
    result counts as dead-lettered: it is listed and cleaned with the dead letters."""
    ids = _decoded(await redis.zrevrangebyscore(qk.results, until_ms, "-inf"))
    raws = await _mget(redis, [qk.result(i) for i in ids])
    states = [None if raw is None else finished_state(raw) for raw in raws]
    failed = [i for i, state in zip(ids, states, strict=True) if state is JobState.FAILED]
    letters = await _mget(redis, [qk.dead_record(i) for i in failed])
    dead = {i for i, d in zip(failed, letters, strict=True) if d is not None}
    return [
        (i, JobState.DEAD_LETTERED if i in dead else state)
        for i, state in zip(ids, states, strict=True)
    ]


async def clean_jobs(
    redis: RedisClient,
    keys: Keys,
    dead_letters: DeadLetterStore,
    queue: QueueName,
    state: CleanState,
    older_than: float,
) -> int:
    """Delete `queue`'s finished jobs of `state` that ended more than `older_than` seconds
    ago (their results and progress, or their dead letters); returns how many."""
    if state not in CLEAN_STATES:
        raise ValueError(f"cannot clean {state!r} jobs; only {', '.join(CLEAN_STATES)}")
    if state == "dead-lettered":
        return await dead_letters.trim(queue, older_than=older_than)
    cutoff = int((time.time() - older_than) * 1000)
    cleaned = 0
    for qk in keys.partitions_of(queue):
        found = await _finished(redis, qk, cutoff)
        doomed = [i for i, s in found if s is not None and s.value == state]
        stale = [i for i, s in found if s is None]
        if not doomed and not stale:
            continue
        records = [key for i in doomed for key in (qk.result(i), qk.progress(i))]
        await delete_indexed(redis, qk.results, [*doomed, *stale], records)
        cleaned += len(doomed)
    return cleaned


async def _mget(redis: RedisClient, names: Sequence[str]) -> list[bytes | None]:
    values: list[bytes | None] = []
    for start in range(0, len(names), CHUNK):
        values += await redis.mget(names[start : start + CHUNK])
    return values


def _decoded(ids: Sequence[bytes]) -> list[str]:
    return [i.decode() for i in ids]
