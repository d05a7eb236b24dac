"""Taskiq with taskiq-redis's RedisStreamBroker, run by Taskiq's own CLI.

The stream broker reads up to 100 messages per XREADGROUP and acknowledges each job after it
ran, the taskiq-redis broker closest to postroom's at-least-once delivery; `ListQueueBroker`
(BRPOP, no acknowledgement: a job is lost if its worker dies) can be chosen with
`BENCH_TASKIQ_BROKER=list`. No result backend, so jobs store nothing after they run. The CLI
runs one worker process (`--workers 1`, its default is 2) with `--max-async-tasks 100`; it uses
uvloop when installed. Taskiq has no bulk enqueue.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from taskiq import AsyncBroker
from taskiq_redis import ListQueueBroker, RedisStreamBroker

from benchmarks import jobs
from benchmarks.jobs import JobSpec

BULK = False
VERSIONS = ("taskiq", "taskiq-redis", "redis", "uvloop")
QUEUE = "bench"


def _broker() -> AsyncBroker:
    if os.environ.get("BENCH_TASKIQ_BROKER", "stream") == "list":
        return ListQueueBroker(jobs.redis_url(), queue_name=QUEUE)
    return RedisStreamBroker(jobs.redis_url(), queue_name=QUEUE)


broker = _broker()


@broker.task(task_name=jobs.NOOP)  # type: ignore[untyped-decorator]
async def bench_noop() -> None:
    await jobs.done()


@broker.task(task_name=jobs.SLEEP)  # type: ignore[untyped-decorator]
async def bench_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
    await jobs.done()


@broker.task(task_name=jobs.LATENCY)  # type: ignore[untyped-decorator]
async def bench_latency(enqueued_at: float) -> None:
    await jobs.started(enqueued_at)


TASKS: dict[str, Any] = {
    jobs.NOOP: bench_noop,
    jobs.SLEEP: bench_sleep,
    jobs.LATENCY: bench_latency,
}


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    argv = ["-m", "taskiq", "worker", f"{__name__}:broker", "--workers", str(processes)]
    return [*argv, "--max-async-tasks", str(jobs.concurrency())], {}


async def connect() -> AsyncBroker:
    # Also creates the stream's consumer group, so jobs enqueued before a worker starts count.
    await broker.startup()
    return broker


async def close(client: AsyncBroker) -> None:
    await client.shutdown()


async def enqueue_one(client: AsyncBroker, job: JobSpec) -> None:
    await TASKS[job.task].kiq(**job.kwargs())


async def enqueue_bulk(client: AsyncBroker, batch: Sequence[JobSpec]) -> None:
    raise NotImplementedError("Taskiq has no bulk enqueue")
