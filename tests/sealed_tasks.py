"""Tasks whose payloads carry a marker the payload encryption tests look for in Redis."""

from __future__ import annotations

from pydantic import BaseModel

from config.queues import BackoffPolicy, QueueName
from workers import JobContext, PermanentError, task

QUICK = BackoffPolicy(base=0.05, cap=0.05, jitter=False)


class Note(BaseModel):
    """What a notification carries: a body and an address, both private."""

    key: str  # a Redis key of the test's, counting tries
    text: str
    email: str


@task(queue=QueueName.DELIVERY, name="tests.sealed.carry", max_tries=3, backoff=QUICK)
async def carry(ctx: JobContext, note: Note) -> dict[str, str]:
    """Reports progress quoting the note, fails its first try quoting it, then returns it."""
    await ctx["progress"](percentage=50, step="half", data={"quote": note.text})
    if await ctx["redis"].incr(note.key) == 1:
        raise RuntimeError(f"the first try fails for {note.email}: {note.text}")
    return {"echo": note.text, "to": note.email}


@task(queue=QueueName.DELIVERY, name="tests.sealed.fail", max_tries=2, backoff=QUICK)
async def fail(ctx: JobContext, note: Note) -> None:
    """Fails every try quoting the note: dead-lettered after two, with both tries' errors."""
    raise RuntimeError(f"try {ctx['job_try']} failed for {note.email}: {note.text}")


@task(queue=QueueName.DELIVERY, name="tests.sealed.reject")
async def reject(ctx: JobContext, note: Note) -> None:
    """A provider's refusal: the job goes to the dead letters at once."""
    raise PermanentError("rejected by the provider")
