"""The `EventBus` interface, and the factory that picks its implementation from the settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from config.errors import ConfigError
from config.settings import PostroomSettings
from workers.client import PostroomClient
from workers.events.handlers import EventHandlers, handlers
from workers.events.memory import InMemoryEventBus
from workers.events.model import DomainEvent
from workers.events.queued import QueuedEventBus


class EventBus(Protocol):
    """Publishes domain events to their handlers; use cases depend on this, not on a bus."""

    async def publish(self, event: DomainEvent) -> bool:
        """Hand `event` to its handlers; False when this event (its id) was published before."""
        ...

    async def publish_all(self, events: Iterable[DomainEvent]) -> list[bool]:
        """Publish each event, in order; answers as `publish` does, in the same order."""
        ...


def event_bus(
    settings: PostroomSettings,
    client: PostroomClient | None = None,
    registry: EventHandlers = handlers,
) -> EventBus:
    """The in-memory bus, or the queued one when `USE_QUEUE_EVENT_BUS` is true."""
    if settings.use_queue_event_bus:
        if client is None:
            raise ConfigError("USE_QUEUE_EVENT_BUS is true: the queued event bus needs a client")
        return QueuedEventBus(client, queue=settings.event_queue)
    return InMemoryEventBus(registry, client=client)
