"""A group whose handler waits, once started, until the test opens its gate (a Redis key):
what a shutdown finds running."""

from __future__ import annotations

import asyncio

from tests.events.rabbitmq_events import Stuck, group, record, record_key
from workers.events import EventContext, on


@on(Stuck)
async def gated(event: Stuck, context: EventContext) -> None:
    assert context.client is not None
    await record(context, "started", event.id)
    gate = record_key(context.client.settings.key_prefix, group(), "gate")
    while not await context.client.redis.exists(gate):  # noqa: ASYNC110 - the gate is in Redis
        await asyncio.sleep(0.02)
    await record(context, "done", event.id)
