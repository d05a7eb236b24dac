"""Domain events sent to the audit trail (workers/store/audit_log.py), without holding up
the publisher, as the seed's audit-log queue did:

```python
audit_events(ClaimApproved, ClaimRejected, actor=lambda event: event.user_id)
```

registers a handler for each class. On the queued bus it runs in the worker that handles
the event, long after `publish` returned, and writes the record there (a Redis failure
retries the event's job like any handler's). On the in-memory bus, where handlers run
inside `publish`, it only enqueues a job that writes the record (`postroom.audit.<queue>` on
`POSTROOM_EVENT_QUEUE`, job id `audit-<event id>`, so an event is recorded once); if even
that fails, the record is logged whole at ERROR and the publisher carries on: an audit
failure never fails the publisher's own operation.

A record's action is `event.<type>`, its actor what `actor` says (default "events"), its
detail the event with message bodies and secrets masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from config.queues import QueueName
from workers.context import JobContext
from workers.events.handlers import EventContext, EventHandlers, handlers
from workers.events.model import DomainEvent
from workers.observe.masking import mask
from workers.registry import Task, task
from workers.store.audit_log import AuditRecord, audit_log, log_unwritten

logger = logging.getLogger(__name__)

DEFAULT_ACTOR = "events"


def event_record(event: dict[str, Any], actor: str) -> AuditRecord:
    """The audit record of an event (as `DomainEvent.to_json` gives it)."""
    return AuditRecord(
        actor=actor,
        via="event",
        action=f"event.{event.get('type')}",
        job_ids=[],
        detail=mask(event),
        outcome="ok",
    )


async def record_event(ctx: JobContext, event: dict[str, Any], actor: str) -> str:
    """Write an event's audit record; returns its id (a Redis error retries the job)."""
    return await audit_log(ctx["redis"], ctx["settings"]).append(event_record(event, actor))


# One task per queue, as the event bus's dispatch tasks: `POSTROOM_EVENT_QUEUE` picks it.
AUDIT_TASKS: dict[QueueName, Task[Any, str]] = {
    queue: task(queue=queue, name=f"postroom.audit.{queue.value}")(record_event)
    for queue in QueueName
}


def audit_events(
    *event_classes: type[DomainEvent],
    actor: Callable[[Any], str] | None = None,
    registry: EventHandlers = handlers,
) -> None:
    """Write every event of these classes to the audit trail (see the module docstring)."""

    async def to_audit_trail(event: DomainEvent, context: EventContext) -> None:
        who = actor(event) if actor is not None else DEFAULT_ACTOR
        data = event.to_json()
        if context.job is not None:  # the queued bus: in a worker, the publisher is gone
            await record_event(context.job, data, who)
            return
        try:
            if context.client is None:
                raise RuntimeError("the in-memory event bus was built without a client")
            client = context.client
            request = AUDIT_TASKS[client.settings.event_queue].call(data, who)
            await client.enqueue(request.with_options(job_id=f"audit-{event.id}"))
        except (RedisError, OSError, RuntimeError) as exc:
            log_unwritten(event_record(data, who), exc)

    for event_class in event_classes:
        registry.on(event_class)(to_audit_trail)
