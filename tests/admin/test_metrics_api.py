"""`GET /metrics` of the admin API: every queue's numbers from Redis, behind the token."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST

from config.queues import QueueName
from tests.metrics_text import parse, value
from tests.sample_tasks import Greeting, echo
from workers.client import PostroomClient


async def test_metrics_needs_the_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert "postroom_queue" not in response.text


async def test_metrics_show_each_queues_numbers_from_redis(
    api: httpx.AsyncClient, client: PostroomClient
) -> None:
    await client.pause(QueueName.DELIVERY)
    for n in range(2):
        await client.enqueue(echo.call(Greeting(messageId=f"m{n}", text="waits")))
    await client.enqueue(echo.call(Greeting(messageId="later", text="later")), delay=600)
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = parse(response.text)
    delivery = {"queue": "message-delivery"}
    assert value(samples, "postroom_queue_waiting", **delivery) == 2
    assert value(samples, "postroom_queue_delayed", **delivery) == 1
    assert value(samples, "postroom_queue_paused", **delivery) == 1
    assert value(samples, "postroom_queue_paused", queue="message-cleanup") == 0
    assert value(samples, "postroom_queue_workers", **delivery) == 0
    assert {queue for (name, labels) in samples for key, queue in labels if key == "queue"} == {
        q.value for q in QueueName
    }
