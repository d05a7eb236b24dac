"""Tasks of the Redis security tests (imported by their subprocess workers too)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, Field

from config.queues import BackoffPolicy, QueueName
from workers import JobContext, task

QUICK = BackoffPolicy(kind="fixed", base=0.05, cap=0.05, jitter=False)


class Letter(BaseModel):
    """A message as users write it: its content must never reach an operator's screen."""

    message_id: str = Field(alias="messageId", min_length=1)
    content: str
    access_token: str | None = Field(default=None, alias="accessToken")
    # Where the provider is, credentials in the URL as some providers take them.
    callback_url: str | None = Field(default=None, alias="callbackUrl")


@task(queue=QueueName.DELIVERY, name="tests.security.deliver", rate_limit="1000/s burst=10")
async def deliver(ctx: JobContext, letter: Letter) -> dict[str, str]:
    """Reads and writes under the key prefix, as a real task does, under a rate limit (its
    script reads Redis' clock): an ACL user must allow both."""
    keys = ctx["redis"]
    prefix = ctx["settings"].key_prefix
    await keys.set(f"{prefix}:delivered:{letter.message_id}", "1", ex=60)
    return {"messageId": letter.message_id, "queue": ctx["queue"].value}


@task(queue=QueueName.DELIVERY, name="tests.security.flaky", max_tries=2, backoff=QUICK)
async def flaky(ctx: JobContext, letter: Letter) -> None:
    """Fails every try as a provider that is down would: retried, then dead-lettered."""
    at = f" at {letter.callback_url}" if letter.callback_url else ""
    # An HTTP client's error quotes the URL it called, password and all.
    raise RuntimeError(f"provider answered 503 for message {letter.message_id}{at}")


@task(queue=QueueName.DELIVERY, name="tests.security.held", max_tries=3)
async def held(ctx: JobContext, release: str) -> str:
    """Runs until the file `release` exists (another process makes it), touching no Redis:
    the job a worker holds while its credentials are revoked."""
    while not await asyncio.to_thread(Path(release).exists):  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.05)
    return "released"
