"""`GET /rate-limits` and the rate-limit metrics of the admin API, from the buckets in Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from config.queues import QueueName, QueueTable
from config.rate_limits import RateLimit, parse_rate_limit
from config.settings import PostroomSettings
from tests.admin.conftest import AUTH, TOKEN
from tests.admin.test_admin_cli import postroom
from tests.conftest import eventually, running_worker
from tests.metrics_text import parse, value
from tests.rate_limit_tasks import stamp
from workers.client import PostroomClient
from workers.ops.admin import create_admin_app


def limited_settings(settings: PostroomSettings) -> PostroomSettings:
    """One start a minute on the notification queue (the first at once), SMS at 10/s."""
    queues = QueueTable.model_validate({"message_notification": {"rate_limit": "1/m"}})
    sms = RateLimit.model_validate(parse_rate_limit("10/s"))
    return settings.model_copy(update={"queues": queues, "rate_limits": {"sms": sms}})


@pytest.fixture
async def limited_api(settings: PostroomSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_admin_app(settings=limited_settings(settings), token=TOKEN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://admin", headers=AUTH
        ) as api:
            yield api


async def run_one_of_three(settings: PostroomSettings, client: PostroomClient) -> None:
    """Three jobs against the 1/m limit: the first starts, the other two wait for it."""
    key = uuid.uuid4().hex
    jobs = await client.enqueue_many([stamp.call(key) for _ in range(3)])
    assert len(jobs) == 3
    async with running_worker(limited_settings(settings)):

        async def throttled() -> bool:
            return bool((await client.queue_stats(QueueName.NOTIFICATION)).completed == 1)

        await eventually(throttled, "the first job completed")
    assert await client.redis.llen(f"{key}:starts") == 1  # the others still wait


async def test_rate_limits_api_shows_each_limit_its_rate_and_throttled_jobs(
    settings: PostroomSettings, client: PostroomClient, limited_api: httpx.AsyncClient
) -> None:
    await run_one_of_three(settings, client)
    response = await limited_api.get("/rate-limits")
    assert response.status_code == 200
    limits = {item["name"]: item for item in response.json()}
    queue = limits["queue:message-notification"]
    assert queue["queue"] == "message-notification"
    assert queue["limit"] == "1/m burst=1"
    assert queue["at_limit"] is True
    assert queue["waiting"] == 2  # held back by the limit, not failed, not retried
    assert queue["throttled"] >= 1
    assert queue["rate"] > 0
    sms = limits["sms"]
    assert (sms["limit"], sms["per_second"], sms["rate"], sms["held"]) == ("10/s burst=1", 10, 0, 0)
    assert "task:tests.rate_limit.own_limit" in limits  # a registered task's own limit

    refused = await limited_api.get("/rate-limits", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401


async def test_rate_limit_metrics_of_the_admin_api(
    settings: PostroomSettings, client: PostroomClient, limited_api: httpx.AsyncClient
) -> None:
    await run_one_of_three(settings, client)
    samples = parse((await limited_api.get("/metrics")).text)
    queue = {"limit": "queue:message-notification"}
    assert value(samples, "postroom_rate_limit_per_second", **queue) == pytest.approx(1 / 60)
    assert value(samples, "postroom_rate_limit_at_limit", **queue) == 1
    assert value(samples, "postroom_rate_limit_waiting", **queue) == 2
    assert value(samples, "postroom_rate_limit_throttled_total", **queue) >= 1
    assert value(samples, "postroom_rate_limit_per_second", limit="sms") == 10
    assert value(samples, "postroom_queue_deferred_total", queue="message-notification") == 0


async def test_rate_limits_command_prints_each_limit(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    await run_one_of_three(settings, client)
    env = {
        "POSTROOM_QUEUES__MESSAGE_NOTIFICATION__RATE_LIMIT": "1/m",
        "POSTROOM_RATE_LIMITS__SMS": "10/s",
    }
    code, out, err = await postroom(settings, "rate-limits", "--output", "json", **env)
    assert code == 0, err
    limits = {item["name"]: item for item in orjson.loads(out)}
    assert limits["queue:message-notification"]["waiting"] == 2
    assert limits["sms"]["limit"] == "10/s burst=1"
    code, out, err = await postroom(settings, "rate-limits", **env)
    assert code == 0, err
    assert "queue:message-notification" in out and "1/m burst=1" in out
