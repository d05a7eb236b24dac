"""Domain events written to the audit trail through the event bus, without holding up the
publisher: on the in-memory bus `publish` only enqueues a job that a real worker runs to
write the record; on the queued bus the worker handling the event writes it; a bus that
cannot even enqueue logs the record and the publisher carries on."""

from __future__ import annotations

import logging
from typing import Literal

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient
from workers.events import (
    DomainEvent,
    EventHandlers,
    InMemoryEventBus,
    QueuedEventBus,
    audit_events,
    handlers,
)
from workers.events.audit import AUDIT_TASKS
from workers.store.audit_log import AuditFilter, AuditRecord, audit_log
from workers.store.job_status import JobState


class ClaimApproved(DomainEvent):
    type: Literal["tests.audit.claim-approved"] = "tests.audit.claim-approved"
    claim_id: str
    user_id: str
    content: str  # a message body: masked in the record


# On the global handlers, the ones a worker dispatches queued events from.
audit_events(ClaimApproved, actor=lambda event: event.user_id, registry=handlers)


async def records(settings: PostroomSettings, client: PostroomClient) -> list[AuditRecord]:
    page = await audit_log(client.redis, settings).query(AuditFilter(via="event"))
    return page.items


def expected(event: ClaimApproved) -> dict[str, object]:
    return {
        "actor": "u7", "role": None, "via": "event", "source": None,
        "action": "event.tests.audit.claim-approved", "queue": None, "job_ids": [],
        "count": None, "outcome": "ok", "reason": None, "status": None,
        "detail": {
            "id": event.id, "type": "tests.audit.claim-approved",
            "occurredAt": event.occurred_at.isoformat().replace("+00:00", "Z"),
            "version": 1, "claimId": "c1", "userId": "u7", "content": "***",
        },
    }  # fmt: skip


async def test_in_memory_bus_audit_events_are_queued_and_written_by_a_worker(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    bus = InMemoryEventBus(handlers, client=client)
    event = ClaimApproved(claim_id="c1", user_id="u7", content="approved, pay out")
    assert await bus.publish(event) is True
    # publish returned having only queued the record's job.
    job = await client.job_info(f"audit-{event.id}")
    assert job is not None and job.state is JobState.QUEUED
    assert job.task == AUDIT_TASKS[settings.event_queue].name
    assert await records(settings, client) == []
    async with running_worker(settings, queues=[settings.event_queue]):
        await client.job(f"audit-{event.id}", AUDIT_TASKS[settings.event_queue]).result(60)
    [record] = await records(settings, client)
    assert record.model_dump(exclude={"id", "at"}, mode="json") == expected(event)
    # Published again (a retried request): recorded once.
    await bus.publish(event)
    async with running_worker(settings, queues=[settings.event_queue]):
        assert len(await records(settings, client)) == 1


async def test_queued_bus_audit_events_are_written_by_the_worker_handling_them(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    bus = QueuedEventBus(client, queue=QueueName.NOTIFICATION)
    event = ClaimApproved(claim_id="c1", user_id="u7", content="approved, pay out")
    assert await bus.publish(event) is True
    assert await records(settings, client) == []
    async with running_worker(settings, queues=[QueueName.NOTIFICATION]):

        async def written() -> bool:
            return len(await records(settings, client)) == 1

        await eventually(written, "the worker wrote the event's audit record")
    [record] = await records(settings, client)
    assert record.model_dump(exclude={"id", "at"}, mode="json") == expected(event)
    assert await client.job_info(f"audit-{event.id}") is None  # no second job


async def test_an_audit_event_that_cannot_be_queued_does_not_fail_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = EventHandlers()
    audit_events(ClaimApproved, registry=registry)
    bus = InMemoryEventBus(registry)  # no client: nowhere to queue the record
    event = ClaimApproved(claim_id="c2", user_id="u8", content="secret words")
    with caplog.at_level(logging.ERROR, logger="workers.store.audit_log"):
        assert await bus.publish(event) is True
    [line] = [r.message for r in caplog.records if "audit record not written" in r.message]
    assert event.id in line and '"actor":"events"' in line and "secret words" not in line
