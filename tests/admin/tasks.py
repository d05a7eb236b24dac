"""Tasks the admin tests run through real workers (subprocess CLIs import them too)."""

from __future__ import annotations

import asyncio
import uuid

from pydantic import BaseModel, Field

from config.queues import BackoffPolicy, QueueName
from workers import JobContext, PermanentError, task


class Note(BaseModel):
    message_id: str = Field(alias="messageId", min_length=1)
    recipient_id: str = Field(alias="recipientId", min_length=1)
    content: str
    auth_token: str | None = Field(default=None, alias="authToken")


@task(queue=QueueName.DELIVERY, name="admin.greet")
async def greet(ctx: JobContext, note: Note) -> dict[str, str]:
    return {"messageId": note.message_id, "content": note.content}


@task(queue=QueueName.DELIVERY, name="admin.refuse")
async def refuse(ctx: JobContext, note: Note) -> None:
    raise PermanentError(f"recipient {note.recipient_id} refused")


@task(queue=QueueName.DELIVERY, name="admin.hold", timeout=600)
async def hold(ctx: JobContext, key: str) -> str:
    """Reports progress, then runs until the test sets `key:release`."""
    await ctx["progress"](percentage=50, step="holding")
    await ctx["redis"].rpush(f"{key}:started", ctx["job_id"])
    while not await ctx["redis"].exists(f"{key}:release"):  # noqa: ASYNC110 - flag in Redis
        await asyncio.sleep(0.02)
    return "released"


@task(
    queue=QueueName.DELIVERY,
    name="admin.flaky",
    max_tries=2,
    backoff=BackoffPolicy(kind="fixed", base=3600, cap=3600, jitter=False),
)
async def flaky(ctx: JobContext) -> None:
    """Fails its first try and waits an hour to retry."""
    raise RuntimeError("provider down")


def note(n: int | str = 1, **extra: str) -> dict[str, object]:
    """A valid `note` payload."""
    return {"note": {"messageId": f"m{n}", "recipientId": f"u{n}", "content": "hello Bob", **extra}}


def unique_id(name: str) -> str:
    """A job id no other test uses: arq's job and result keys are not under a test's prefix."""
    return f"{name}-{uuid.uuid4().hex[:10]}"
