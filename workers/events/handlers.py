"""Event handlers by event type, running them so each succeeds once per event, and the errors
of a run (EventHandlersFailed, EventHandlersRejected).

A handler is `async def handler(event: MessagePosted) -> None`, registered with
`@on(MessagePosted)`; one that takes a second argument gets an `EventContext` (a client to
enqueue follow-up jobs; on the queued bus, the dispatch job's context). The handlers of an
event run one after another, in registration order; each one that returns is recorded in a
`HandledLog`, so when the event is handled again (a retry after another handler failed, or
the same event published twice) it is skipped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from workers.client import PostroomClient
from workers.context import JobContext
from workers.error_text import own_words, shown
from workers.errors import PermanentError, PostroomError
from workers.events.errors import EventDefinitionError, UnknownEventError
from workers.events.model import DomainEvent
from workers.observe.masking import masked_text

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=DomainEvent)
# `async def handler(event)` or `async def handler(event, context)`.
Handler = Callable[..., Awaitable[None]]
H = TypeVar("H", bound=Handler)


class EventHandlersFailed(PostroomError):
    """Raised when handlers of an event raised; the others ran, and are not run again."""

    def __init__(self, event: DomainEvent, failures: Mapping[str, BaseException]) -> None:
        self.event = event
        self.failures = dict(failures)
        detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failures.items())
        failed = f"event {event.type} {event.id}: {len(failures)} handler(s) failed: "
        super().__init__(failed + detail)
        # What logs and event dead letters show without the handlers' own text (error_text).
        safe = (
            f"{name}: {type(exc).__name__}: {shown(exc, details=False)}"
            for name, exc in failures.items()
        )
        own_words(self, failed + "; ".join(safe))


class EventHandlersRejected(EventHandlersFailed, PermanentError):
    """Raised when every failing handler raised `PermanentError`: retrying cannot help."""


@dataclass(frozen=True)
class EventContext:
    """What a handler that asks for it gets besides the event."""

    # For follow-up jobs; None on an in-memory bus built without a client.
    client: PostroomClient | None
    # The dispatch job's context on the queued bus (redis, settings, the worker's services).
    job: JobContext | None = None
    # Whether a failing handler's warning quotes its exception (error_text.py); unset, the
    # settings of the client or the job decide, else it does.
    details: bool | None = None

    @property
    def error_details(self) -> bool:
        if self.details is not None:
            return self.details
        if self.client is not None:
            return self.client.settings.error_details
        return self.job is None or self.job["settings"].error_details


def _takes_context(name: str, handler: Handler) -> bool:
    if not inspect.iscoroutinefunction(handler):
        raise EventDefinitionError(f"handler {name} must be an async def")
    positional = [
        p
        for p in inspect.signature(handler).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) not in (1, 2):
        raise EventDefinitionError(
            f"handler {name} must take (event) or (event, context), not {len(positional)} arguments"
        )
    return len(positional) == 2


def handler_name(handler: Handler) -> str:
    """A handler's stable name (module and qualified name): what the handled log records."""
    return f"{handler.__module__}.{handler.__qualname__}"


class HandledLog(Protocol):
    """Which handlers of an event have succeeded, kept where the bus runs them."""

    async def handled(self, event_id: str) -> set[str]: ...

    async def mark(self, event_id: str, handler: str) -> None: ...


class EventHandlers:
    """Event classes and their handlers by type. The module-level `handlers` is the one the
    buses and the workers use; register on it in a module the workers import."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._handlers: dict[str, list[tuple[str, Handler, bool]]] = {}

    def register(self, event_class: type[E]) -> type[E]:
        """Make `event_class` known (a worker needs it to decode the event); usable as decorator."""
        if not (isinstance(event_class, type) and issubclass(event_class, DomainEvent)):
            raise EventDefinitionError(f"{event_class!r} is not a DomainEvent subclass")
        known = self._classes.setdefault(event_class.event_type, event_class)
        if known is not event_class:
            raise EventDefinitionError(
                f"event type {event_class.event_type!r} is already declared by "
                f"{known.__module__}.{known.__qualname__}"
            )
        return event_class

    def on(self, event_class: type[DomainEvent]) -> Callable[[H], H]:
        """Register the decorated `async def handler(event[, context])` for `event_class`."""
        self.register(event_class)

        def register_handler(handler: H) -> H:
            name = handler_name(handler)
            takes_context = _takes_context(name, handler)
            registered = self._handlers.setdefault(event_class.event_type, [])
            if any(existing == name for existing, _, _ in registered):
                raise EventDefinitionError(
                    f"handler {name} is already registered for {event_class.event_type!r}"
                )
            registered.append((name, handler, takes_context))
            return handler

        return register_handler

    def event_class(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._classes[event_type]
        except KeyError:
            raise UnknownEventError(
                f"no event class is registered for type {event_type!r} in this process: "
                "import the module declaring its handlers (POSTROOM_TASK_MODULES)"
            ) from None

    def handlers_for(self, event_type: str) -> list[tuple[str, Handler, bool]]:
        return list(self._handlers.get(event_type, ()))

    def __iter__(self) -> Iterator[type[DomainEvent]]:
        return iter(self._classes.values())

    async def run(self, event: DomainEvent, log: HandledLog, context: EventContext) -> list[str]:
        """Run the handlers `log` has not seen succeed; returns the names of those that ran.

        Every handler gets its turn even when one before it fails; then the failures are
        raised together (`EventHandlersFailed`, or `EventHandlersRejected` when all of them
        raised `PermanentError`).
        """
        done = await log.handled(event.id)
        ran: list[str] = []
        failures: dict[str, BaseException] = {}
        for name, handler, takes_context in self.handlers_for(event.type):
            if name in done:
                continue
            try:
                await (handler(event, context) if takes_context else handler(event))
            except Exception as exc:
                logger.warning(
                    "handler %s failed on event %s %s: %s: %s",
                    name,
                    event.type,
                    event.id,
                    type(exc).__name__,
                    masked_text(shown(exc, details=context.error_details), event.to_json()),
                )
                failures[name] = exc
            else:
                await log.mark(event.id, name)
                ran.append(name)
        if failures:
            permanent = all(isinstance(exc, PermanentError) for exc in failures.values())
            error = (EventHandlersRejected if permanent else EventHandlersFailed)(event, failures)
            # The first failure's traceback is the one kept with the job's try error.
            raise error from next(iter(failures.values()))
        return ran


handlers = EventHandlers()
on = handlers.on
