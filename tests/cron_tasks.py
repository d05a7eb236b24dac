"""A cron task that ticks every second; imported only by the worker processes of test_cron."""

from __future__ import annotations

from config.queues import QueueName
from workers import JobContext, task


@task(queue=QueueName.CLEANUP, name="tests.every_second", cron="* * * * * *")
async def every_second(ctx: JobContext) -> None:
    await ctx["redis"].rpush(f"{ctx['settings'].key_prefix}:ticks", ctx["job_id"])
