"""The supervisor runs each queue at its own concurrency and outlives a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import pytest
from arq.connections import RedisSettings

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.conftest import running_worker
from tests.sample_tasks import Greeting, echo, occupy
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis, _answers_ping
from workers.registry import TaskRegistry, registry
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime


async def test_queue_concurrency_from_settings_bounds_jobs_running_at_once(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    two_at_once = load_settings(
        redis_url=settings.redis_url,
        key_prefix=settings.key_prefix,
        data_dir=settings.data_dir,
        shutdown_grace=5,
        queues={"message_delivery": {"concurrency": 2}},
    )
    assert two_at_once.queues[QueueName.DELIVERY].concurrency == 2
    key = f"{settings.key_prefix}:occupy"
    # Queued before the worker starts, so its first poll finds all three at once.
    handles = await client.enqueue_many(occupy.call(key, 1.0) for _ in range(3))

    async with running_worker(two_at_once, queues=[QueueName.DELIVERY]):
        tries = [await h.result(timeout=60) for h in handles]
    assert tries == [1, 1, 1]
    assert int(await client.redis.get(f"{key}:peak")) == 2
    assert int(await client.redis.get(f"{key}:running")) == 0


async def _wait_until_down(port: int, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while _answers_ping("127.0.0.1", port):
        assert time.monotonic() < deadline, "Redis still answers PING after being stopped"
        await asyncio.sleep(0.05)


async def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while not any(text in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"no log record containing {text!r}"
        await asyncio.sleep(0.05)


async def test_worker_survives_a_redis_restart_and_runs_old_and_new_jobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "redis"
    server = EmbeddedRedis(data_dir).start()
    port = server.port
    try:
        settings = load_settings(
            redis_url=server.url,
            key_prefix=f"test-{uuid.uuid4().hex[:10]}",
            data_dir=tmp_path,
            shutdown_grace=5,
        )
        async with running_worker(settings, queues=[QueueName.DELIVERY]):
            async with await PostroomClient.connect(settings) as client:
                warmup = await client.enqueue(echo.call(Greeting(messageId="w", text="warm")))
                assert (await warmup.result(timeout=30))["text"] == "warm"
                # Due only after the restart: it waits out the outage in the persisted queue.
                before = await client.enqueue(
                    echo.call(Greeting(messageId="b", text="before")), delay=2
                )

            server.stop()
            await _wait_until_down(port)
            await _wait_for_log(caplog, "lost Redis", deadline_s=30)

            server = EmbeddedRedis(data_dir, port=port).start()
            async with await PostroomClient.connect(settings) as client:
                after = await client.enqueue(echo.call(Greeting(messageId="a", text="after")))
                assert (await after.result(timeout=60))["text"] == "after"
                old = client.job(before.job_id, echo)
                assert (await old.result(timeout=60))["text"] == "before"
    finally:
        server.stop()


async def test_burst_mode_returns_once_the_queue_is_empty(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    handles = await client.enqueue_many(
        echo.call(Greeting(messageId=f"m{n}", text="burst")) for n in range(3)
    )
    supervisor = Supervisor(
        Runtime(settings),
        registry,
        RedisSettings.from_dsn(str(settings.redis_url)),
        [QueueName.DELIVERY],
        burst=True,
    )
    await asyncio.wait_for(supervisor.run(), timeout=60)
    assert [(await h.result(timeout=1))["text"] for h in handles] == ["burst"] * 3
    assert await client.redis.zcard(client.keys.of(QueueName.DELIVERY).queue) == 0


async def test_stop_during_start_up_ends_even_when_a_cancellation_is_swallowed(
    settings: PostroomSettings,
) -> None:
    """A SIGTERM while a queue still starts must end the process. On Python 3.11 a cancel
    that races a connect timeout (`asyncio.timeout`) can turn into a TimeoutError that
    redis-py retries, so the queue's start-up goes on as if never cancelled; here a start-up
    hook swallows the cancellation the same way."""
    tasks = TaskRegistry()
    entered = asyncio.Event()

    async def start_up_swallowing_one_cancel(ctx: dict[str, object]) -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    tasks.hooks.on_startup.append(start_up_swallowing_one_cancel)
    supervisor = Supervisor(
        Runtime(settings),
        tasks,
        RedisSettings.from_dsn(settings.redis_dsn() or ""),
        queues=[QueueName.DELIVERY],
    )
    run = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(entered.wait(), timeout=30)
    supervisor.request_stop()
    # Not a timing bound: without the fix run() never returns; 30 s only ends the test.
    await asyncio.wait_for(run, timeout=30)
    assert supervisor.workers == {}
