"""The tasks and client calls both arq profiles share (arq-default and arq-tuned)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from benchmarks import jobs
from benchmarks.jobs import JobSpec

QUEUE = "bench:arq"


async def bench_noop(ctx: dict[str, Any]) -> None:
    await jobs.done()


async def bench_sleep(ctx: dict[str, Any], seconds: float) -> None:
    await asyncio.sleep(seconds)
    await jobs.done()


async def bench_latency(ctx: dict[str, Any], enqueued_at: float) -> None:
    await jobs.started(enqueued_at)


FUNCTIONS = [bench_noop, bench_sleep, bench_latency]


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(jobs.redis_url())


async def connect(serializer: Callable[[Any], bytes] | None = None) -> ArqRedis:
    kwargs: dict[str, Any] = {"default_queue_name": QUEUE}
    if serializer is not None:
        kwargs["job_serializer"] = serializer
    return await create_pool(redis_settings(), **kwargs)


async def close(pool: ArqRedis) -> None:
    await pool.aclose()


async def enqueue_one(pool: ArqRedis, job: JobSpec) -> None:
    await pool.enqueue_job(job.task, **job.kwargs())
