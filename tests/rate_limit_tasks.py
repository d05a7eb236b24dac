"""Tasks the rate-limit tests run, in worker processes and in the test's own."""

from __future__ import annotations

import os
import time

from config.queues import QueueName
from workers import JobContext, task


@task(queue=QueueName.NOTIFICATION, name="tests.rate_limit.stamp")
async def stamp(ctx: JobContext, key: str) -> int:
    """Records when and where it started (Redis' clock is not needed: one machine)."""
    await ctx["redis"].rpush(f"{key}:starts", f"{time.time():.6f} {os.getpid()}")
    return ctx["job_try"]


@task(queue=QueueName.INDEXING, name="tests.rate_limit.own_limit", rate_limit="5/s burst=1")
async def own_limit(ctx: JobContext, key: str) -> int:
    """A task with a limit of its own, taken before its function runs."""
    await ctx["redis"].rpush(f"{key}:starts", f"{time.time():.6f}")
    return ctx["job_try"]


@task(queue=QueueName.INDEXING, name="tests.rate_limit.named")
async def named(ctx: JobContext, key: str) -> int:
    """Throttles on the named limit `provider` (POSTROOM_RATE_LIMITS__PROVIDER)."""
    await ctx["throttle"]("provider")
    await ctx["redis"].rpush(f"{key}:starts", f"{time.time():.6f}")
    return ctx["job_try"]
