"""postroom, through its public API: `@task`, `PostroomClient`, `python -m workers worker`.

The worker serves only the message-delivery queue, its concurrency raised to 100 through the
environment as an operator would; everything else is postroom's default (uvloop, orjson,
poll_delay 0.05 s with a wake-up on enqueue (the idle worker's claim queued behind its BLPOP),
concurrent enqueues of the client coalesced, leases, metrics, one INFO log line per job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from benchmarks import jobs
from benchmarks.jobs import JobSpec
from config.queues import QueueName
from config.settings import load_settings
from workers import JobContext, PostroomClient, task

BULK = True
VERSIONS = ("postroom", "arq", "redis", "uvloop", "orjson")
KEY_PREFIX = "bench"


@task(queue=QueueName.DELIVERY, name=jobs.NOOP)
async def bench_noop(ctx: JobContext) -> None:
    await jobs.done()


@task(queue=QueueName.DELIVERY, name=jobs.SLEEP)
async def bench_sleep(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await jobs.done()


@task(queue=QueueName.DELIVERY, name=jobs.LATENCY)
async def bench_latency(ctx: JobContext, enqueued_at: float) -> None:
    await jobs.started(enqueued_at)


TASKS: dict[str, Any] = {t.name: t for t in (bench_noop, bench_sleep, bench_latency)}


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    argv = ["-m", "workers", "worker", "--queues", QueueName.DELIVERY.value]
    if processes > 1:
        argv += ["--processes", str(processes)]
    env = {
        "REDIS_URL": jobs.redis_url(),
        "POSTROOM_KEY_PREFIX": KEY_PREFIX,
        "POSTROOM_TASK_MODULES": __name__,
        "POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY": str(jobs.concurrency()),
    }
    return argv, env


async def connect() -> PostroomClient:
    settings = load_settings(redis_url=jobs.redis_url(), key_prefix=KEY_PREFIX)
    return await PostroomClient.connect(settings)


async def close(client: PostroomClient) -> None:
    await client.close()


async def enqueue_one(client: PostroomClient, job: JobSpec) -> None:
    await client.enqueue(TASKS[job.task].call(**job.kwargs()))


async def enqueue_bulk(client: PostroomClient, batch: Sequence[JobSpec]) -> None:
    await client.enqueue_many([TASKS[job.task].call(**job.kwargs()) for job in batch])
