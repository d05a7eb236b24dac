"""The admin API's request and response bodies besides the runtime's own models
(QueueStats, JobInfo, DeadLetter, JobPage), which it returns as they are."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from config.queues import QueueName
from workers.store.dead_letter import DeadLetter
from workers.store.job_listing import CleanState
from workers.store.job_status import JobInfo
from workers.store.priority import Priority

# Most items one page may hold, so that a listing stays one quick round trip.
MAX_PAGE = 500


class Problem(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class JobDetail(JobInfo):
    """A job with its payload, message bodies and secrets masked ("***")."""

    payload: dict[str, Any] | None = None


class DeadLetterPage(BaseModel):
    queue: QueueName
    total: int
    offset: int
    limit: int
    items: list[DeadLetter]


class EnqueueRequest(BaseModel):
    """A task by its registered name and its arguments as JSON, keyed by argument name."""

    task: str = Field(min_length=1, examples=["send-message"])
    payload: dict[str, Any] = Field(default_factory=dict)
    job_id: str | None = Field(default=None, min_length=1, max_length=200)
    priority: Priority | None = None
    delay: float | None = Field(
        default=None, ge=0, le=366 * 86_400, strict=True, description="seconds"
    )


class EnqueueResult(BaseModel):
    job_id: str
    task: str
    queue: QueueName
    created: bool = Field(description="False when the job id was already taken")


class CancelResult(BaseModel):
    job_id: str
    outcome: Literal["cancelled", "stopping"]


class CleanRequest(BaseModel):
    state: CleanState
    older_than: float = Field(
        default=0, ge=0, le=10 * 366 * 86_400, strict=True, description="seconds since it ended"
    )


class Removed(BaseModel):
    removed: int


class Retried(BaseModel):
    retried: int


class Readiness(BaseModel):
    """Ready when Redis answers and every expected queue has a live worker."""

    ready: bool
    redis: bool
    workers: dict[str, int] = Field(description="live worker processes per expected queue")
    missing: list[QueueName] = Field(description="expected queues without a live worker")
    error: str | None = None


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


__all__ = [
    "MAX_PAGE",
    "CancelResult",
    "CleanRequest",
    "DeadLetterPage",
    "EnqueueRequest",
    "EnqueueResult",
    "JobDetail",
    "Liveness",
    "Problem",
    "Readiness",
    "Removed",
    "Retried",
]
