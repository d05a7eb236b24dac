"""Jobs by id: their detail (payload masked), enqueueing by task name, cancelling."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.exceptions import RequestValidationError

from workers.client import PostroomClient
from workers.errors import PayloadValidationError, UnknownTaskError
from workers.observe.masking import mask, masked_job
from workers.ops.admin.audit import Audit, AuditedRoute, audited
from workers.ops.admin.params import BAD_BODY, NOT_FOUND, no_job
from workers.ops.admin.schemas import CancelResult, EnqueueRequest, EnqueueResult, JobDetail
from workers.ops.admin.state import admin_client

router = APIRouter(tags=["jobs"], route_class=AuditedRoute)
Client = Annotated[PostroomClient, Depends(admin_client)]


@router.get(
    "/jobs/{job_id}", summary="A job's state, progress, tries, result or error", responses=NOT_FOUND
)
async def job_detail(job_id: str, client: Client) -> JobDetail:
    """Its payload and result with message bodies and secrets masked ("***")."""
    info = await client.job_info(job_id)
    if info is None:
        raise no_job(job_id)
    payload = await client.job_payload(job_id)
    return JobDetail(**masked_job(info).model_dump(), payload=mask(payload))


@router.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    summary="Enqueue a task by name with a JSON payload",
    responses={
        status.HTTP_200_OK: {"model": EnqueueResult, "description": "id already taken"},
        **BAD_BODY,
    },
    openapi_extra=audited("job.enqueue"),
)
async def enqueue(
    request: EnqueueRequest, client: Client, response: Response, audit: Audit
) -> EnqueueResult:
    """The payload is validated against the task's arguments first: a bad field is a 422
    naming it (`payload.message.recipientId`). A taken `job_id` answers 200 with the
    existing job and `created: false`."""
    audit.detail = {"task": request.task}
    audit.job_ids = [request.job_id] if request.job_id else []
    try:
        task = client.tasks.get(request.task)
        handle = await client.enqueue_payload(
            request.task,
            request.payload,
            job_id=request.job_id,
            priority=request.priority,
            delay=request.delay,
        )
    except UnknownTaskError as exc:
        known = ", ".join(sorted(t.name for t in client.tasks))
        raise _invalid([("task",)], f"{exc}; known: {known}", request.task) from None
    except PayloadValidationError as exc:
        raise RequestValidationError(
            [_field_error(field, message, exc.task) for field, message in exc.errors]
        ) from None
    if not handle.created:
        response.status_code = status.HTTP_200_OK
    audit.queue, audit.job_ids, audit.count = task.queue.value, [handle.job_id], 1
    audit.detail["created"] = handle.created
    return EnqueueResult(
        job_id=handle.job_id, task=task.name, queue=task.queue, created=handle.created
    )


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a waiting or running job",
    responses=NOT_FOUND,
    openapi_extra=audited("job.cancel"),
)
async def cancel(job_id: str, client: Client, audit: Audit) -> CancelResult:
    """ "cancelled": it will never start; "stopping": its worker stops it within a second."""
    info = await client.job_info(job_id)
    audit.queue = info.queue.value if info is not None and info.queue is not None else None
    outcome = await client.cancel(job_id)
    audit.detail = {"outcome": outcome}
    audit.count = 0 if outcome == "not-found" else 1
    if outcome == "not-found":
        raise no_job(job_id, " waiting or running")
    return CancelResult(job_id=job_id, outcome=outcome)


def _field_error(field: str, message: str, task: str) -> dict[str, Any]:
    # `<payload>` (the payload as a whole) or `<arguments>` name no field of their own.
    named = field and not field.startswith("<")
    parts = [int(p) if p.isdigit() else p for p in field.split(".")] if named else []
    return {
        "loc": ["body", "payload", *parts],
        "msg": f"payload.{field}: {message} (task {task!r})" if named else message,
        "type": "value_error",
    }


def _invalid(locs: list[tuple[str, ...]], message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [
            {"loc": ["body", *loc], "msg": message, "type": "value_error", "input": value}
            for loc in locs
        ]
    )
