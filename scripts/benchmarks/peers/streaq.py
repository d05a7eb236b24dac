"""streaq (Redis streams, coredis), run by its own CLI, concurrency 100, uvloop via anyio.

Everything else is streaq's default (pickle, prefetch = concurrency, results kept 5 min,
an INFO log line per task). `Worker.enqueue_many` is its bulk enqueue (one pipeline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streaq import Worker

from benchmarks import jobs
from benchmarks.jobs import JobSpec

BULK = True
VERSIONS = ("streaq", "coredis", "anyio", "uvloop")

worker: Worker[Any] = Worker(
    redis_url=jobs.redis_url(),
    concurrency=jobs.concurrency(),
    queue_name="bench",
    anyio_kwargs={"use_uvloop": True},
)


@worker.task(name=jobs.NOOP)
async def bench_noop() -> None:
    await jobs.done()


@worker.task(name=jobs.SLEEP)
async def bench_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
    await jobs.done()


@worker.task(name=jobs.LATENCY)
async def bench_latency(enqueued_at: float) -> None:
    await jobs.started(enqueued_at)


TASKS: dict[str, Any] = {
    jobs.NOOP: bench_noop,
    jobs.SLEEP: bench_sleep,
    jobs.LATENCY: bench_latency,
}


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    return ["-m", "streaq", "run", f"{__name__}:worker", "--workers", str(processes)], {}


async def connect() -> Worker[Any]:
    await worker.__aenter__()
    return worker


async def close(client: Worker[Any]) -> None:
    await client.__aexit__(None, None, None)


async def enqueue_one(client: Worker[Any], job: JobSpec) -> None:
    await TASKS[job.task].enqueue(**job.kwargs())


async def enqueue_bulk(client: Worker[Any], batch: Sequence[JobSpec]) -> None:
    await client.enqueue_many([TASKS[job.task].enqueue(**job.kwargs()) for job in batch])
