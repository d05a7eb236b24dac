"""A queue's failed jobs (its dead letters): listed with every try's traceback, retried,
removed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from workers.client import PostroomClient
from workers.observe.masking import masked_letter
from workers.ops.admin.audit import Audit, AuditedRoute, audited
from workers.ops.admin.params import NOT_FOUND, Limit, Offset, Queue, Responses, no_job
from workers.ops.admin.schemas import DeadLetterPage, Problem, Removed, Retried
from workers.ops.admin.state import admin_client
from workers.store.dead_letter import DeadLetter, retryable, why

router = APIRouter(tags=["failed jobs"], route_class=AuditedRoute)
Client = Annotated[PostroomClient, Depends(admin_client)]

CONFLICT: Responses = {
    status.HTTP_409_CONFLICT: {
        "model": Problem,
        "description": "still being finished, or malformed (nothing to queue again)",
    }
}


async def _letter(client: PostroomClient, queue: Queue, job_id: str) -> DeadLetter:
    letter = await client.dead_letters.get(job_id)
    if letter is None or letter.queue != queue:
        raise no_job(job_id, f" among the dead letters of {queue.value}")
    return letter


@router.get(
    "/queues/{queue}/failed", summary="A queue's dead letters, newest first", responses=NOT_FOUND
)
async def failed(
    queue: Queue, client: Client, offset: Offset = 0, limit: Limit = 50
) -> DeadLetterPage:
    """Each with its reason and every try's error and traceback; payloads masked."""
    letters = await client.dead_letters.list(queue, offset=offset, limit=limit)
    return DeadLetterPage(
        queue=queue,
        total=await client.dead_letters.count(queue),
        offset=offset,
        limit=limit,
        items=[masked_letter(letter, client.sealer) for letter in letters],
    )


@router.get("/queues/{queue}/failed/{job_id}", summary="One dead letter", responses=NOT_FOUND)
async def failed_one(queue: Queue, job_id: str, client: Client) -> DeadLetter:
    return masked_letter(await _letter(client, queue, job_id), client.sealer)


@router.post(
    "/queues/{queue}/failed/retry",
    summary="Retry every dead letter of the queue",
    responses=NOT_FOUND,
    openapi_extra=audited("dead-letter.retry-all"),
)
async def retry_all(queue: Queue, client: Client, audit: Audit) -> Retried:
    audit.count = await client.dead_letters.retry_all(queue)
    return Retried(retried=audit.count)


@router.post(
    "/queues/{queue}/failed/{job_id}/retry",
    summary="Queue a dead letter again (same id, a fresh try budget)",
    responses={**NOT_FOUND, **CONFLICT},
    openapi_extra=audited("dead-letter.retry"),
)
async def retry(queue: Queue, job_id: str, client: Client, audit: Audit) -> Retried:
    letter = await _letter(client, queue, job_id)
    if not retryable(letter):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id!r} cannot be retried: {why(letter)}"
        )
    if not await client.dead_letters.retry(job_id):
        if await client.dead_letters.get(job_id) is None:
            raise no_job(job_id, f" among the dead letters of {queue.value}")
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"job {job_id!r} is still being finished by its worker; retry in a moment",
        )
    audit.count = 1
    return Retried(retried=1)


@router.delete(
    "/queues/{queue}/failed/{job_id}",
    summary="Delete one dead letter",
    responses=NOT_FOUND,
    openapi_extra=audited("dead-letter.remove"),
)
async def remove(queue: Queue, job_id: str, client: Client, audit: Audit) -> Removed:
    await _letter(client, queue, job_id)
    audit.count = int(await client.dead_letters.remove(job_id))
    return Removed(removed=audit.count)


@router.delete(
    "/queues/{queue}/failed",
    summary="Delete every dead letter of the queue",
    responses=NOT_FOUND,
    openapi_extra=audited("dead-letter.purge"),
)
async def purge(queue: Queue, client: Client, audit: Audit) -> Removed:
    audit.count = await client.dead_letters.purge(queue)
    return Removed(removed=audit.count)
