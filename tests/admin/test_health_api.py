"""Readiness: Redis answers and every expected queue has a live worker heartbeat."""

from __future__ import annotations

import httpx

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.admin.conftest import AUTH, TOKEN
from tests.conftest import eventually, running_worker
from workers.ops.admin import create_admin_app


async def test_not_ready_names_the_queues_without_a_worker_and_ready_once_served(
    settings: PostroomSettings,
) -> None:
    expected = [QueueName.DELIVERY, QueueName.NOTIFICATION]
    app = create_admin_app(settings=settings, token=TOKEN, expected_queues=expected)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://admin", headers=AUTH
        ) as api,
    ):
        answer = await api.get("/health/ready")
        assert answer.status_code == 503
        assert answer.json()["missing"] == ["message-delivery", "message-notification"]
        assert answer.json()["redis"] is True

        async def missing(*queues: str) -> bool:
            return bool((await api.get("/health/ready")).json()["missing"] == list(queues))

        async with running_worker(settings, queues=[QueueName.DELIVERY]):
            await eventually(lambda: missing("message-notification"), "delivery has a worker")
            half = (await api.get("/health/ready")).json()
            assert half["workers"] == {"message-delivery": 1, "message-notification": 0}
            async with running_worker(settings, queues=[QueueName.NOTIFICATION]):
                await eventually(missing, "both queues have a worker")
                ready = await api.get("/health/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["ready"] is True
        # A stopped worker removes its heartbeat.
        assert (await api.get("/health/ready")).status_code == 503


async def test_an_unreachable_redis_is_not_ready_and_a_503_elsewhere(
    settings: PostroomSettings, unused_tcp_port: int
) -> None:
    down = load_settings(
        redis_url=f"redis://127.0.0.1:{unused_tcp_port}", key_prefix=settings.key_prefix
    )
    app = create_admin_app(settings=down, token=TOKEN)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://admin", headers=AUTH
        ) as api,
    ):
        ready = await api.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["redis"] is False and "Redis" in ready.json()["error"]
        assert (await api.get("/health/live")).status_code == 200
        stats = await api.get("/queues")
        assert stats.status_code == 503
        assert stats.json()["detail"].startswith("cannot reach Redis")
