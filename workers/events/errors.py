"""The event bus's exceptions (all `PostroomError`s).

EventDefinitionError   (an event class or handler is declared wrong; raised at import)
EventHandlersFailed    (handlers raised; names each; the job retries)
└── EventHandlersRejected (every failing handler raised PermanentError: dead-letter now)
UnknownEventError      (a worker has no class for an event's type: dead-lettered)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from workers.errors import PermanentError, PostroomError

if TYPE_CHECKING:
    from workers.events.model import DomainEvent


class EventDefinitionError(PostroomError, TypeError):
    """Raised at import when an event class or a handler registration is invalid."""


class EventHandlersFailed(PostroomError):
    """Raised when handlers of an event raised; the others ran, and are not run again."""

    def __init__(self, event: DomainEvent, failures: Mapping[str, BaseException]) -> None:
        self.event = event
        self.failures = dict(failures)
        detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failures.items())
        super().__init__(
            f"event {event.type} {event.id}: {len(failures)} handler(s) failed: {detail}"
        )


class EventHandlersRejected(EventHandlersFailed, PermanentError):
    """Raised when every failing handler raised `PermanentError`: retrying cannot help."""


class UnknownEventError(PermanentError):
    """Raised in a worker when no event class is registered for an event's type."""
