"""Domain events: `publish(event)` to handlers registered with `@on(EventType)`.

Three buses behind one `EventBus` interface, picked by `POSTROOM_EVENT_TRANSPORT` (or
`USE_QUEUE_EVENT_BUS`; `event_bus()`): in-memory (handlers run in the publishing process),
queued (each event is a job whose id is the event's id, run by the workers, retried and
dead-lettered like any job) and rabbitmq (events leave the deployment through a topic
exchange, for consumers in any language; workers/events/rabbitmq/).
`audit_events(EventType, ...)` sends events to the audit trail without holding up the
publisher.
"""

from workers.events.audit import audit_events
from workers.events.bus import EventBus, event_bus
from workers.events.errors import EventDefinitionError, EventPublishError, UnknownEventError
from workers.events.handlers import (
    EventContext,
    EventHandlers,
    EventHandlersFailed,
    EventHandlersRejected,
    Handler,
    handler_name,
    handlers,
    on,
)
from workers.events.memory import InMemoryEventBus
from workers.events.model import DomainEvent
from workers.events.queued import QueuedEventBus
from workers.events.rabbitmq.publisher import RabbitMQEventBus

__all__ = [
    "DomainEvent",
    "EventBus",
    "EventContext",
    "EventDefinitionError",
    "EventHandlers",
    "EventHandlersFailed",
    "EventHandlersRejected",
    "EventPublishError",
    "Handler",
    "InMemoryEventBus",
    "QueuedEventBus",
    "RabbitMQEventBus",
    "UnknownEventError",
    "audit_events",
    "event_bus",
    "handler_name",
    "handlers",
    "on",
]
