"""The beta group's handlers: the same event as alpha, and one alpha does not take."""

from __future__ import annotations

from tests.events.rabbitmq_events import Audited, Shipped, record
from workers.events import EventContext, on


@on(Shipped)
async def beta_shipped(event: Shipped, context: EventContext) -> None:
    await record(context, "shipped", event.id)


@on(Audited)
async def beta_audited(event: Audited, context: EventContext) -> None:
    await record(context, "audited", event.id)
