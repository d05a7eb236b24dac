"""The event dead letters of the RabbitMQ transport, by handler group: listed, retried,
removed, purged, like a queue's failed jobs.

Each request opens its own connection to the broker and closes it (the admin API is called
seldom, and a mounted admin app has no lifespan to close a lasting one). An unknown group
is a 404, a deployment without RABBITMQ_URL a 409, a broker that is away a 503. Each change
is recorded in the audit trail (`event-dead-letter.retry`, `.retry-all`, `.remove`,
`.purge`, with the group in `detail`), as a queue's dead letters are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel

from workers.client import PostroomClient
from workers.events.rabbitmq.dead_letters import EventDeadLetter, EventDeadLetters
from workers.ops.admin.audit import Audit, AuditedRoute, audited
from workers.ops.admin.params import Limit, Offset, Responses
from workers.ops.admin.schemas import Problem, Removed, Retried
from workers.ops.admin.state import admin_client, admin_state

router = APIRouter(tags=["event dead letters"], route_class=AuditedRoute)
Client = Annotated[PostroomClient, Depends(admin_client)]
Group = Annotated[
    str,
    Path(description="a handler group (POSTROOM_EVENT_GROUP)", pattern=r"^[A-Za-z0-9_.-]{1,100}$"),
]

ERRORS: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": Problem, "description": "unknown group or dead letter"},
    status.HTTP_409_CONFLICT: {"model": Problem, "description": "no RabbitMQ is configured"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Problem, "description": "RabbitMQ is away"},
}


class EventGroups(BaseModel):
    """The handler groups whose consumers ran; `enabled` is false without RABBITMQ_URL."""

    enabled: bool
    groups: list[str]


class EventDeadLetterPage(BaseModel):
    group: str
    total: int
    offset: int
    limit: int
    items: list[EventDeadLetter]


async def _letters(request: Request, client: Client) -> AsyncIterator[EventDeadLetters]:
    """The group's dead letters over a connection of this request's own."""
    from workers.events.rabbitmq.dead_letters import UnknownEventGroup
    from workers.events.rabbitmq.publisher import broker_address, transient_errors

    settings = admin_state(request).settings
    if not settings.rabbitmq_url:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "event dead letters are kept in RabbitMQ, and RABBITMQ_URL is not set",
        )
    letters = EventDeadLetters(settings, client.redis)
    try:
        yield letters
    except UnknownEventGroup as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except transient_errors() as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"cannot reach RabbitMQ at {broker_address(settings.rabbitmq_url)}: "
            f"{type(exc).__name__}: {exc}",
        ) from None
    finally:
        await letters.close()


Letters = Annotated[EventDeadLetters, Depends(_letters)]


def _no_letter(group: str, letter_id: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, f"no event {letter_id!r} among the dead letters of {group}"
    )


@router.get("/events/groups", summary="The RabbitMQ handler groups whose consumers ran")
async def groups(request: Request, client: Client) -> EventGroups:
    settings = admin_state(request).settings
    if not settings.rabbitmq_url:
        return EventGroups(enabled=False, groups=[])
    members = await client.redis.smembers(client.keys.event_groups())  # type: ignore[misc]
    return EventGroups(enabled=True, groups=sorted(m.decode() for m in members))


@router.get(
    "/events/{group}/failed",
    summary="A handler group's event dead letters, oldest first",
    responses=ERRORS,
)
async def failed(
    group: Group, letters: Letters, offset: Offset = 0, limit: Limit = 50
) -> EventDeadLetterPage:
    """Each with its reason, error and tries; event data masked."""
    page = await letters.list(group, offset, limit)
    return EventDeadLetterPage(
        group=group,
        total=await letters.count(group),
        offset=offset,
        limit=limit,
        items=[letter.masked() for letter in page],
    )


@router.get("/events/{group}/failed/{letter_id}", summary="One event dead letter", responses=ERRORS)
async def failed_one(group: Group, letter_id: str, letters: Letters) -> EventDeadLetter:
    letter = await letters.get(group, letter_id)
    if letter is None:
        raise _no_letter(group, letter_id)
    return letter.masked()


@router.post(
    "/events/{group}/failed/retry",
    summary="Send every dead letter of the group back to it",
    responses=ERRORS,
    openapi_extra=audited("event-dead-letter.retry-all"),
)
async def retry_all(group: Group, letters: Letters, audit: Audit) -> Retried:
    audit.detail["group"] = group
    audit.count = await letters.retry(group)
    return Retried(retried=audit.count)


@router.post(
    "/events/{group}/failed/{letter_id}/retry",
    summary="Send one dead letter back to its group (a fresh try budget)",
    responses=ERRORS,
    openapi_extra=audited("event-dead-letter.retry"),
)
async def retry(group: Group, letter_id: str, letters: Letters, audit: Audit) -> Retried:
    audit.detail["group"], audit.job_ids = group, [letter_id]
    if not await letters.retry(group, {letter_id}):
        raise _no_letter(group, letter_id)
    audit.count = 1
    return Retried(retried=1)


@router.delete(
    "/events/{group}/failed/{letter_id}",
    summary="Delete one event dead letter",
    responses=ERRORS,
    openapi_extra=audited("event-dead-letter.remove"),
)
async def remove(group: Group, letter_id: str, letters: Letters, audit: Audit) -> Removed:
    audit.detail["group"], audit.job_ids = group, [letter_id]
    if not await letters.remove(group, {letter_id}):
        raise _no_letter(group, letter_id)
    audit.count = 1
    return Removed(removed=1)


@router.delete(
    "/events/{group}/failed",
    summary="Delete every event dead letter of the group",
    responses=ERRORS,
    openapi_extra=audited("event-dead-letter.purge"),
)
async def purge(group: Group, letters: Letters, audit: Audit) -> Removed:
    audit.detail["group"] = group
    audit.count = await letters.purge(group)
    return Removed(removed=audit.count)
