"""The alpha group's handlers (POSTROOM_TASK_MODULES of its consumer processes)."""

from __future__ import annotations

from tests.events.rabbitmq_events import Shipped, record
from workers.events import EventContext, on


@on(Shipped)
async def alpha_shipped(event: Shipped, context: EventContext) -> None:
    await record(context, "shipped", event.id)
