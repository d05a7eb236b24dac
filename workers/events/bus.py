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
from workers.events.rabbitmq.publisher import RabbitMQEventBus


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
    """The bus `POSTROOM_EVENT_TRANSPORT` (or `USE_QUEUE_EVENT_BUS`) picks: in-memory (the
    default), queued, or RabbitMQ (close it with `await bus.close()` when done)."""
    transport = settings.event_bus_transport
    if transport == "queued":
        if client is None:
            raise ConfigError("the queued event bus (USE_QUEUE_EVENT_BUS) needs a client")
        return QueuedEventBus(client, queue=settings.event_queue)
    if transport == "rabbitmq":
        if not settings.rabbitmq_url:
            raise ConfigError("POSTROOM_EVENT_TRANSPORT is rabbitmq: set RABBITMQ_URL")
        return RabbitMQEventBus(
            settings.rabbitmq_url,
            settings.event_exchange,
            publish_timeout=settings.event_publish_timeout,
            client=client,
        )
    return InMemoryEventBus(registry, client=client, error_details=settings.error_details)
