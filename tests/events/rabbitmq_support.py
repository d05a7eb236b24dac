"""What the RabbitMQ tests share: settings on the session's broker with an exchange of the
test's own, consumer processes, and a look at a queue (messages waiting, consumers)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aio_pika

from config.settings import PostroomSettings, load_settings
from tests.conftest import eventually, spawn, worker_env
from tests.events.rabbitmq_events import record_key
from tests.servers.rabbitmq import Broker
from workers.client import PostroomClient
from workers.events import EventHandlers
from workers.events.rabbitmq.consumer import EventConsumer

# Quick retries for the tests: three tries, 0.2 s then 0.4 s apart (no jitter).
RETRY_QUEUES = {"message_notification": {"max_tries": 3, "backoff": {"base": 0.2, "jitter": False}}}
# A consumer's claim on a running event lapses 2 s after the consumer dies.
RETRY_ENV = {
    "POSTROOM_LEASE_SECONDS": "2",
    "POSTROOM_QUEUES__MESSAGE_NOTIFICATION__MAX_TRIES": "3",
    "POSTROOM_QUEUES__MESSAGE_NOTIFICATION__BACKOFF__BASE": "0.2",
    "POSTROOM_QUEUES__MESSAGE_NOTIFICATION__BACKOFF__JITTER": "false",
}


def rabbit_settings(settings: PostroomSettings, broker: Broker, **extra: Any) -> PostroomSettings:
    """The test's settings with the RabbitMQ transport on an exchange no other test uses."""
    return load_settings(
        redis_url=settings.redis_url,
        key_prefix=settings.key_prefix,
        data_dir=settings.data_dir,
        shutdown_grace=5,
        event_transport="rabbitmq",
        rabbitmq_url=broker.url,
        event_exchange=broker.exchange(),
        queues=RETRY_QUEUES,
        lease_seconds=2,
        **extra,
    )


def consumer_process(
    settings: PostroomSettings, group: str, modules: str, **env: str
) -> subprocess.Popen[bytes]:
    """`postroom events --transport rabbitmq --group GROUP` in its own process."""
    assert settings.rabbitmq_url is not None
    return spawn(
        [sys.executable, "-m", "workers", "events", "--transport", "rabbitmq", "--group", group],
        worker_env(
            settings,
            RABBITMQ_URL=settings.rabbitmq_url,
            POSTROOM_EVENT_EXCHANGE=settings.event_exchange,
            POSTROOM_EVENT_GROUP=group,
            POSTROOM_TASK_MODULES=modules,
            **{"POSTROOM_SHUTDOWN_GRACE": "5", **RETRY_ENV, **env},
        ),
    )


async def queue_state(url: str, name: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, or (-1, -1) while it does not exist."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return -1, -1
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
    finally:
        await connection.close()


async def wait_consuming(settings: PostroomSettings, group: str, consumers: int = 1) -> None:
    assert settings.rabbitmq_url is not None
    name = f"{settings.event_exchange}.{group}"

    async def consuming() -> bool:
        return (await queue_state(str(settings.rabbitmq_url), name))[1] >= consumers

    await eventually(consuming, f"{consumers} consumer(s) of group {group} are subscribed")


async def recorded(client: PostroomClient, group: str, what: str) -> list[str]:
    key = record_key(client.settings.key_prefix, group, what)
    return [item.decode() for item in await client.redis.lrange(key, 0, -1)]


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then its exit code (SIGKILL if it does not stop in time)."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextlib.asynccontextmanager
async def consuming_here(
    settings: PostroomSettings, client: PostroomClient, registry: EventHandlers, group: str
) -> AsyncIterator[EventConsumer]:
    """A consumer in this event loop (a real connection to the broker) until the block ends."""
    consumer = EventConsumer(settings, client, registry, group=group)
    run = asyncio.create_task(consumer.run())
    ready = asyncio.create_task(consumer.ready.wait())
    await asyncio.wait([run, ready], return_when=asyncio.FIRST_COMPLETED)
    if run.done():
        ready.cancel()
        run.result()  # raises what stopped it
    try:
        yield consumer
    finally:
        consumer.stop()
        await run
