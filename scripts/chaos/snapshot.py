"""What Redis holds once the soak has drained: every acknowledged job's state, the dead
letters, the queue's entries (and which have no job record), and the queue's counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from config.queues import QueueName
from workers.client import PostroomClient
from workers.store.dead_letter import DeadLetter
from workers.store.job_status import JobInfo, read_job_infos
from workers.store.queue_stats import QueueStats

QUEUE = QueueName.DELIVERY
_PAGE = 500


@dataclass(frozen=True, slots=True)
class Snapshot:
    infos: dict[str, JobInfo | None]
    dead_letters: dict[str, DeadLetter]
    queue_entries: list[str]
    orphans: list[str]  # queue entries with no job record
    stats: QueueStats


async def _dead_letters(client: PostroomClient) -> dict[str, DeadLetter]:
    letters: dict[str, DeadLetter] = {}
    while True:
        page = await client.dead_letters.list(QUEUE, offset=len(letters), limit=_PAGE)
        letters.update((letter.job_id, letter) for letter in page)
        if len(page) < _PAGE:
            return letters


async def _orphans(client: PostroomClient, entries: list[str]) -> list[str]:
    keys = client.keys.of(QUEUE)
    async with client.redis.pipeline(transaction=False) as pipe:
        for job_id in entries:
            pipe.exists(keys.job(job_id))
        found = await pipe.execute()
    return [job_id for job_id, exists in zip(entries, found, strict=True) if not exists]


async def read_snapshot(client: PostroomClient, job_ids: Sequence[str]) -> Snapshot:
    infos: dict[str, JobInfo | None] = {}
    for at in range(0, len(job_ids), _PAGE):
        page = job_ids[at : at + _PAGE]
        read = await read_job_infos(client.redis, client.keys, page, QUEUE)
        infos.update(zip(page, read, strict=True))
    entries = [
        raw.decode() for raw in await client.redis.zrange(client.keys.of(QUEUE).queue, 0, -1)
    ]
    return Snapshot(
        infos=infos,
        dead_letters=await _dead_letters(client),
        queue_entries=entries,
        orphans=await _orphans(client, entries),
        stats=await client.queue_stats(QUEUE),
    )


async def drain(client: PostroomClient, within: float) -> tuple[bool, float]:
    """Wait until the queue holds no entry and no job runs; (drained, seconds waited).

    Read errors (Redis restarting) are waited through like a non-empty queue."""
    keys = client.keys.of(QUEUE)
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            async with client.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.queue)
                pipe.zcard(keys.active)
                queued, active = await pipe.execute()
        except Exception:
            queued = active = -1
        if queued == 0 and active == 0:
            return True, time.monotonic() - start
        await asyncio.sleep(0.25)
    return False, time.monotonic() - start
