"""The event bus's exceptions (all `PostroomError`s).

EventDefinitionError   (an event class or handler is declared wrong; raised at import)
UnknownEventError      (a worker has no class for an event's type: dead-lettered)
EventHandlersFailed    (handlers raised; names each; the job retries)
└── EventHandlersRejected (every failing handler raised PermanentError: dead-letter now)
EventPublishError      (the broker did not confirm an event in time: it may not be published)

The last two carry the event, so they live with the handlers that raise them (handlers.py):
the event model raises EventDefinitionError and must not import what imports it.
"""

from __future__ import annotations

from workers.errors import PermanentError, PostroomError


class EventDefinitionError(PostroomError, TypeError):
    """Raised at import when an event class or a handler registration is invalid."""


class UnknownEventError(PermanentError):
    """Raised in a worker when no event class is registered for an event's type."""


class EventPublishError(PostroomError):
    """Raised when RabbitMQ did not confirm an event within the publish timeout (it was away,
    or refused it); publishing it again is safe, consumers drop duplicates by event id."""
