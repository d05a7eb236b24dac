"""Jobs enqueued through the client run in a real worker."""

from __future__ import annotations

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import running_worker
from tests.sample_tasks import Greeting, echo, occupy
from workers.client import PostroomClient
from workers.store.keys import Keys


async def test_enqueued_job_runs_in_worker_and_result_is_readable(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    async with running_worker(settings):
        job = await client.enqueue(echo.call(Greeting(messageId="m1", text="hello")))
        assert job.created
        result = await job.result(timeout=30)
    assert result == {"text": "hello", "queue": "message-delivery", "task": "tests.echo"}


@pytest.mark.parametrize("queue", list(QueueName), ids=lambda q: q.value)
async def test_each_queue_runs_the_tasks_declared_on_it(
    settings: PostroomSettings, client: PostroomClient, queue: QueueName
) -> None:
    probe = client.tasks.get(f"tests.probe.{queue.value}")
    async with running_worker(settings, queues=[queue]):
        job = await client.enqueue(probe.call())
        assert await job.result(timeout=30) == queue.value
        info = await job.info()
        assert info is not None
        assert info.queue == queue


async def test_job_waits_in_its_queue_until_a_worker_serving_that_queue_runs_it(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    delivery_key = Keys(settings.key_prefix).of(QueueName.DELIVERY).queue
    key = f"{settings.key_prefix}:occupy"
    job = await client.enqueue(occupy.call(key, 0.01))
    assert await client.redis.zrange(delivery_key, 0, -1) == [job.job_id.encode()]

    notification = client.tasks.get(f"tests.probe.{QueueName.NOTIFICATION.value}")
    async with running_worker(settings, queues=[QueueName.NOTIFICATION]):
        other = await client.enqueue(notification.call())
        assert await other.result(timeout=30) == QueueName.NOTIFICATION.value
    assert await client.redis.zrange(delivery_key, 0, -1) == [job.job_id.encode()]

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        assert await job.result(timeout=30) == 1
    assert await client.redis.zcard(delivery_key) == 0
