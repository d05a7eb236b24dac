"""The sealing benchmark's task (scripts/sealing_bench.py): a no-op on message-delivery
carrying a notification-sized payload, so sealing has something to seal."""

from __future__ import annotations

from pydantic import BaseModel

from config.queues import QueueName
from workers import JobContext, task


class Note(BaseModel):
    recipient_id: str
    email: str
    text: str


@task(queue=QueueName.DELIVERY, name="bench.sealing.noop")
async def bench_noop(ctx: JobContext, note: Note) -> None:
    """Nothing: what is measured is postroom's cost per job, with and without sealing."""
