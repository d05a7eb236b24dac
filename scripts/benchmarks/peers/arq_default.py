"""arq 0.28 as it comes: its own CLI, pickle, asyncio's loop, poll_delay 0.5 s, read limit 500.

Only `max_jobs` is set (to the benchmark's concurrency, 100, instead of arq's 10), since every
system's worker runs at the same concurrency. arq has no bulk enqueue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from arq.connections import ArqRedis

from benchmarks import jobs
from benchmarks.jobs import JobSpec
from benchmarks.peers import _arq

BULK = False
VERSIONS = ("arq", "redis")


class WorkerSettings:
    """What `arq benchmarks.peers.arq_default.WorkerSettings` runs."""

    functions: ClassVar[list[Any]] = _arq.FUNCTIONS
    queue_name = _arq.QUEUE
    redis_settings = _arq.redis_settings()
    max_jobs = jobs.concurrency()


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    if processes != 1:
        raise ValueError("arq's CLI runs one process")
    return ["-m", "arq", f"{__name__}.WorkerSettings"], {}


async def connect() -> ArqRedis:
    pool: ArqRedis = await _arq.connect()
    return pool


async def close(client: ArqRedis) -> None:
    await _arq.close(client)


async def enqueue_one(client: ArqRedis, job: JobSpec) -> None:
    await _arq.enqueue_one(client, job)


async def enqueue_bulk(client: ArqRedis, batch: Sequence[JobSpec]) -> None:
    raise NotImplementedError("arq has no bulk enqueue")
