"""The cleanup queue's upkeep cron trims dead letters past each queue's retention."""

from __future__ import annotations

import time

from config.queues import QueueName
from config.settings import PostroomSettings
from tasks.maintenance import trim_dead_letters
from tests.conftest import running_worker
from workers.client import PostroomClient
from workers.registry import TaskRegistry
from workers.store.dead_letter import try_error

DAY = 86_400.0


def without_cron() -> TaskRegistry:
    """trim_dead_letters alone and without its schedule ("17 * * * *"): a worker running
    across minute :17 would otherwise trim before the test's own job, which then finds
    nothing left to trim."""
    tasks = TaskRegistry()
    tasks.task(queue=trim_dead_letters.queue, name=trim_dead_letters.name)(
        trim_dead_letters.function
    )
    return tasks


async def _dead_letter(client: PostroomClient, job_id: str, queue: QueueName, age: float) -> None:
    await client.dead_letters.add(
        job_id=job_id,
        task="tests.echo",
        queue=queue,
        payload={},
        reason="permanent",
        tries=1,
        last_error=try_error(1, RuntimeError("boom")),
        enqueued_at=None,
    )
    # Age it: the index score is when it died.
    await client.redis.zadd(client.keys.of(queue).dead_index, {job_id: time.time() - age})


async def test_dead_letters_past_their_queue_s_retention_are_trimmed(
    settings: PostroomSettings,
) -> None:
    # Delivery keeps dead letters one hour; every other queue the default week.
    queues = settings.queues.model_validate({"message_delivery": {"dead_letter_retention": 3600}})
    settings = settings.model_copy(update={"queues": queues})
    async with await PostroomClient.connect(settings) as client:
        await _dead_letter(client, "delivery-old", QueueName.DELIVERY, age=2 * 3600)
        await _dead_letter(client, "delivery-new", QueueName.DELIVERY, age=60)
        await _dead_letter(client, "notify-old", QueueName.NOTIFICATION, age=8 * DAY)
        await _dead_letter(client, "notify-2h", QueueName.NOTIFICATION, age=2 * 3600)
        async with running_worker(settings, queues=[QueueName.CLEANUP], tasks=without_cron()):
            job = await client.enqueue(trim_dead_letters.call())
            trimmed = await job.result(timeout=30)
        left = {
            queue: [d.job_id for d in await client.dead_letters.list(queue)]
            for queue in (QueueName.DELIVERY, QueueName.NOTIFICATION)
        }
        assert await client.dead_letters.get("delivery-old") is None
    assert trimmed[QueueName.DELIVERY.value] == 1
    assert trimmed[QueueName.NOTIFICATION.value] == 1
    assert left == {QueueName.DELIVERY: ["delivery-new"], QueueName.NOTIFICATION: ["notify-2h"]}
