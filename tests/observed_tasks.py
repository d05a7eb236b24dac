"""Tasks whose runs the metrics and log tests watch (imported by subprocess workers too)."""

from __future__ import annotations

from pydantic import BaseModel, TypeAdapter

from config.queues import BackoffPolicy, QueueName
from workers import JobContext, PermanentError, task

# Quick retries so a test sees the second try within moments.
QUICK = BackoffPolicy(base=0.05, cap=0.05, jitter=False)


class Secret(BaseModel):
    """A payload whose content must never reach a log line."""

    key: str
    content: str
    api_key: str


@task(queue=QueueName.DELIVERY, name="tests.observed.succeeds")
async def succeeds(ctx: JobContext, secret: Secret) -> int:
    return len(secret.content)


@task(queue=QueueName.DELIVERY, name="tests.observed.fails_once", max_tries=3, backoff=QUICK)
async def fails_once(ctx: JobContext, secret: Secret) -> int:
    if await ctx["redis"].incr(secret.key) == 1:
        raise RuntimeError("the first try fails")
    return ctx["job_try"]


@task(queue=QueueName.DELIVERY, name="tests.observed.rejected", max_tries=3, backoff=QUICK)
async def rejected(ctx: JobContext, secret: Secret) -> None:
    raise PermanentError("the provider rejected it")


@task(queue=QueueName.DELIVERY, name="tests.observed.validates", max_tries=1)
async def validates(ctx: JobContext, secret: Secret) -> int:
    """Validates part of its payload itself: pydantic's error quotes the refused value."""
    return TypeAdapter(int).validate_python(secret.content)
