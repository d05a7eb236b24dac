"""The in-memory event bus: handlers run in the publishing process, before `publish` returns.

For tests and small apps. Nothing is retried: a handler's failure reaches the caller as
`EventHandlersFailed`, after the other handlers ran; publishing the event again runs only the
handlers that failed. The bus remembers the last `remember` events it handled.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from workers.client import PostroomClient
from workers.events.handlers import EventContext, EventHandlers, handlers
from workers.events.model import DomainEvent

# Enough to catch a request retried by its client; the queued bus keeps its log in Redis.
REMEMBERED_EVENTS = 10_000


class MemoryHandledLog:
    """The handled log of the last `size` events, in this process."""

    def __init__(self, size: int = REMEMBERED_EVENTS) -> None:
        self.size = size
        self._events: OrderedDict[str, set[str]] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        return event_id in self._events

    def begin(self, event_id: str) -> None:
        self._events.setdefault(event_id, set())
        self._events.move_to_end(event_id)
        while len(self._events) > self.size:
            self._events.popitem(last=False)

    async def handled(self, event_id: str) -> set[str]:
        return set(self._events.get(event_id, ()))

    async def mark(self, event_id: str, handler: str) -> None:
        self._events.setdefault(event_id, set()).add(handler)


class InMemoryEventBus:
    """`publish` awaits the event's handlers in this process."""

    def __init__(
        self,
        registry: EventHandlers = handlers,
        *,
        client: PostroomClient | None = None,
        remember: int = REMEMBERED_EVENTS,
        error_details: bool | None = None,
    ) -> None:
        self.registry = registry
        self.context = EventContext(client=client, details=error_details)
        self.log = MemoryHandledLog(remember)

    async def publish(self, event: DomainEvent) -> bool:
        first = not self.log.seen(event.id)
        self.log.begin(event.id)
        ran = await self.registry.run(event, self.log, self.context)
        return first or bool(ran)

    async def publish_all(self, events: Iterable[DomainEvent]) -> list[bool]:
        return [await self.publish(event) for event in events]
