"""`postroom events --transport rabbitmq`: one consumer process of a handler group."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from config.settings import PostroomSettings
from workers.client import PostroomClient
from workers.connection.redis_server import resolve_redis
from workers.events.rabbitmq.consumer import EventConsumer
from workers.observe.trace_gate import tracing_for
from workers.runner.serve import load_task_modules

logger = logging.getLogger(__name__)


async def consume(settings: PostroomSettings, group: str | None = None) -> None:
    """Consume until SIGTERM/SIGINT (a second one skips the drain's wait)."""
    tracing_for(settings, worker=True)  # with POSTROOM_TRACING: the handlers' calls too
    async with await PostroomClient.connect(settings) as client:
        consumer = EventConsumer(settings, client, group=group)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop, sig)
        try:
            await consumer.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    logger.info("event consumer of group %s stopped", group or settings.event_group)


def run_event_consumer(settings: PostroomSettings, group: str | None = None) -> int:
    """Import the task modules (their `@on` handlers), then consume; returns the exit code."""
    load_task_modules(settings.task_modules)
    _, server = resolve_redis(settings)
    try:
        uvloop.run(consume(settings, group))
    finally:
        if server is not None:
            server.stop()
    return 0
