"""A group whose second handler hangs on the first delivery of each event (the test kills the
consumer then); the first handler succeeds and must not run again on the redelivery."""

from __future__ import annotations

import asyncio

from tests.events.rabbitmq_events import Stuck, record
from workers.events import EventContext, on


@on(Stuck)
async def stuck_first(event: Stuck, context: EventContext) -> None:
    await record(context, "first", event.id)


@on(Stuck)
async def stuck_second(event: Stuck, context: EventContext) -> None:
    if await record(context, "second-started", event.id) == 1:
        await asyncio.Event().wait()  # until SIGKILL
    await record(context, "second-done", event.id)
