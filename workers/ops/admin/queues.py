"""Queues: their numbers, their jobs by state, pausing and cleaning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from config.queues import QueueName
from workers.client import PostroomClient
from workers.observe.masking import masked_job
from workers.ops.admin.audit import Audit, AuditedRoute, audited
from workers.ops.admin.params import BAD_BODY, NOT_FOUND, Limit, Offset, Queue
from workers.ops.admin.schemas import CleanRequest, Removed
from workers.ops.admin.state import admin_client
from workers.store.job_listing import JobPage
from workers.store.job_status import JobState
from workers.store.queue_stats import QueueStats

router = APIRouter(tags=["queues"], route_class=AuditedRoute)
Client = Annotated[PostroomClient, Depends(admin_client)]


@router.get("/queues", summary="Numbers of every queue")
async def all_queues(client: Client) -> list[QueueStats]:
    return await client.queues_stats(QueueName)


@router.get("/queues/{queue}", summary="Numbers of one queue", responses=NOT_FOUND)
async def one_queue(queue: Queue, client: Client) -> QueueStats:
    return await client.queue_stats(queue)


@router.get("/queues/{queue}/jobs", summary="A queue's jobs in one state", responses=NOT_FOUND)
async def queue_jobs(
    queue: Queue,
    client: Client,
    state: Annotated[JobState, Query()] = JobState.QUEUED,
    offset: Offset = 0,
    limit: Limit = 50,
) -> JobPage:
    """Queued jobs in the order they will start; deferred and retrying ones by when they are
    due; complete, failed, cancelled and dead-lettered ones newest first."""
    page = await client.list_jobs(queue, state, offset=offset, limit=limit)
    return page.model_copy(update={"items": [masked_job(item) for item in page.items]})


@router.post(
    "/queues/{queue}/clean",
    summary="Delete old finished jobs of a state",
    responses={**NOT_FOUND, **BAD_BODY},
    openapi_extra=audited("queue.clean"),
)
async def clean(queue: Queue, request: CleanRequest, client: Client, audit: Audit) -> Removed:
    """Results (complete, failed, cancelled) or dead letters that ended more than
    `older_than` seconds ago."""
    audit.detail = {"state": request.state, "older_than": request.older_than}
    audit.count = await client.clean(queue, request.state, request.older_than)
    return Removed(removed=audit.count)


@router.post(
    "/queues/{queue}/pause",
    summary="Stop starting the queue's jobs",
    responses=NOT_FOUND,
    openapi_extra=audited("queue.pause"),
)
async def pause(queue: Queue, client: Client) -> QueueStats:
    """Workers stop starting its jobs within a second; running ones finish, enqueueing works."""
    await client.pause(queue)
    return await client.queue_stats(queue)


@router.post(
    "/queues/{queue}/resume",
    summary="Start the queue's jobs again",
    responses=NOT_FOUND,
    openapi_extra=audited("queue.resume"),
)
async def resume(queue: Queue, client: Client) -> QueueStats:
    await client.resume(queue)
    return await client.queue_stats(queue)
