"""The queued event bus: each event becomes a job, and the workers run its handlers.

The event's id is the job's id, so publishing the same event twice (a retried request)
enqueues it once. One job runs all the handlers of its event, in order; a handler that
succeeded is recorded in Redis (`<prefix>:event:<id>:handled`), so when another handler fails
and the job retries, only the failed ones run again. A handler can still run twice (its
worker dying between its return and the record), so handlers must be idempotent.
Failures retry with the queue's backoff and end in the dead letters like any job's, the
error naming each failed handler; an event whose type the worker does not know is
dead-lettered at once.

The bus's queue is `POSTROOM_EVENT_QUEUE` (default message-notification); a dispatch task is
registered on every queue, so any of them can carry events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from config.queues import QueueName
from workers.client import PostroomClient
from workers.context import JobContext
from workers.errors import PayloadValidationError
from workers.events.handled_log import RedisHandledLog
from workers.events.handlers import EventContext, handlers
from workers.events.model import DomainEvent
from workers.registry import Task, task
from workers.store.keys import Keys


def handled_key(key_prefix: str, event_id: str) -> str:
    return Keys(key_prefix).event_handled(event_id)


def dispatch_task_name(queue: QueueName) -> str:
    return f"postroom.events.{queue.value}"


class EventHandled(BaseModel):
    """A dispatch job's result: the handlers it ran and those an earlier try had run."""

    event_id: str
    type: str
    ran: list[str]
    skipped: list[str]


async def dispatch_event(ctx: JobContext, event: dict[str, Any]) -> EventHandled:
    """Decode the event with its registered class and run its handlers not yet run."""
    event_class = handlers.event_class(str(event.get("type")))
    try:
        decoded = event_class.model_validate(event)
    except ValidationError as exc:
        raise PayloadValidationError.of(ctx["task"], exc, prefix="event.") from exc
    settings = ctx["settings"]
    log = RedisHandledLog(
        ctx["redis"],
        Keys(settings.key_prefix).event_handled,
        settings.keep_result + settings.dead_letter_retention,
    )
    done = await log.handled(decoded.id)
    context = EventContext(client=PostroomClient(ctx["redis"], settings), job=ctx)
    ran = await handlers.run(decoded, log, context)
    return EventHandled(event_id=decoded.id, type=decoded.type, ran=ran, skipped=sorted(done))


# One dispatch task per queue: the setting picks the queue at run time, and a worker finds
# the task of every queue it serves.
DISPATCH_TASKS: dict[QueueName, Task[Any, EventHandled]] = {
    queue: task(queue=queue, name=dispatch_task_name(queue))(dispatch_event) for queue in QueueName
}


class QueuedEventBus:
    """`publish` enqueues the event (job id: the event id) for the workers to handle."""

    def __init__(self, client: PostroomClient, queue: QueueName = QueueName.NOTIFICATION) -> None:
        self.client = client
        self.queue = queue

    async def publish(self, event: DomainEvent) -> bool:
        [created] = await self.publish_all([event])
        return created

    async def publish_all(self, events: Iterable[DomainEvent]) -> list[bool]:
        """All events in one round trip; False for an event already queued, running or done."""
        dispatch = DISPATCH_TASKS[self.queue]
        requests = [
            dispatch.call(event.to_json()).with_options(job_id=event.id) for event in events
        ]
        handles = await self.client.enqueue_many(requests)
        return [handle.created for handle in handles]
