"""The runtime's own upkeep, scheduled like any other cron task on the cleanup queue."""

from __future__ import annotations

from config.queues import QueueName
from workers import Cron, JobContext, PostroomClient, task


async def trim_expired_dead_letters(ctx: JobContext, *, dry_run: bool = False) -> dict[str, int]:
    """Delete (or count) dead letters past their queue's retention; how many, per queue."""
    settings = ctx["settings"]
    store = PostroomClient(ctx["redis"], settings).dead_letters
    trimmed: dict[str, int] = {}
    for queue, config in settings.queues.items():
        retention = config.dead_letter_retention or settings.dead_letter_retention
        trimmed[queue.value] = await store.trim(queue, older_than=retention, dry_run=dry_run)
    return trimmed


@task(queue=QueueName.CLEANUP, name="postroom.trim_dead_letters", cron=Cron("17 * * * *"))
async def trim_dead_letters(ctx: JobContext) -> dict[str, int]:
    """Delete dead letters past their queue's retention; hourly, so none outlives it by much.

    Returns how many were deleted per queue.
    """
    return await trim_expired_dead_letters(ctx)
