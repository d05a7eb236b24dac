"""Tasks the tests run through real workers (imported by subprocess workers too)."""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel, Field

from config.queues import QueueName
from workers import JobContext, task


class Greeting(BaseModel):
    message_id: str = Field(alias="messageId", min_length=1)
    text: str


@task(queue=QueueName.DELIVERY, name="tests.echo")
async def echo(ctx: JobContext, greeting: Greeting) -> dict[str, str]:
    """Returns what it got, with where it ran."""
    return {"text": greeting.text, "queue": ctx["queue"].value, "task": ctx["task"]}


@task(queue=QueueName.DELIVERY, name="tests.occupy")
async def occupy(ctx: JobContext, key: str, seconds: float) -> int:
    """Holds a slot for `seconds`, recording in Redis the most jobs seen running at once."""
    redis = ctx["redis"]
    running = await redis.incr(f"{key}:running")
    await redis.eval(
        "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
        "redis.call('SET', KEYS[1], ARGV[1]) end",
        1,
        f"{key}:peak",
        running,
    )
    try:
        await asyncio.sleep(seconds)
    finally:
        await redis.decr(f"{key}:running")
    return ctx["job_try"]


@task(queue=QueueName.DELIVERY, name="tests.sleep_until_released", timeout=600)
async def sleep_until_released(ctx: JobContext, key: str) -> dict[str, int]:
    """Marks itself started, then waits until the test sets `key:release`."""
    redis = ctx["redis"]
    await redis.rpush(f"{key}:started", f"{os.getpid()}:{ctx['job_try']}")
    while not await redis.exists(f"{key}:release"):  # noqa: ASYNC110 - the flag is in Redis
        await asyncio.sleep(0.05)
    return {"pid": os.getpid(), "try": ctx["job_try"]}


def _queue_probe(queue: QueueName) -> None:
    async def probe(ctx: JobContext) -> str:
        return ctx["queue"].value

    task(queue=queue, name=f"tests.probe.{queue.value}")(probe)


for _queue in QueueName:
    _queue_probe(_queue)
