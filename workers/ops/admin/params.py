"""Path and query parameters shared by the routes: a queue by name (404 if unknown) and
paging bounds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, status

from config.queues import QueueName
from workers.ops.admin.schemas import MAX_PAGE, Problem

KNOWN_NAMES = tuple(q.value for q in QueueName)
KNOWN = ", ".join(KNOWN_NAMES)

Responses = dict[int | str, dict[str, Any]]
BAD_BODY: Responses = {
    status.HTTP_400_BAD_REQUEST: {"model": Problem, "description": "the body is not JSON"}
}
NOT_FOUND: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": Problem, "description": "unknown queue or job"}
}


def unknown_queue(name: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"unknown queue {name!r}; known: {KNOWN}")


def no_job(job_id: str, where: str = "") -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}{where}")


def _queue(
    queue: Annotated[
        str,
        # The schema lists the queues; any other name reaches here and is a 404, not a 422.
        Path(
            description="a queue's name", json_schema_extra={"enum": [q.value for q in QueueName]}
        ),
    ],
) -> QueueName:
    if queue not in QueueName._value2member_map_:
        raise unknown_queue(queue)
    return QueueName(queue)


Queue = Annotated[QueueName, Depends(_queue)]
Offset = Annotated[int, Query(ge=0, le=10**9, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
