"""The message-cleanup queue: `cleanup-messages`, daily at 02:00 UTC.

Deletes messages older than the retention (`retentionDays`, default the
`message_retention_days` setting), deleted conversations with their messages, expired
attachments (rows and files), the search entries and deliveries of what goes, and dead letters
past their queue's retention: `batchSize` rows per transaction. `dryRun` counts exactly what a
real run would delete and deletes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from config.queues import QueueName
from tasks.maintenance import trim_expired_dead_letters
from tasks.payloads import CleanupJob, CleanupResult, now
from tasks.services import message_store, service
from tasks.store import CLEANUP_KINDS, CleanupCounts, CleanupKind, cleanup
from workers import JobContext, task


@task(queue=QueueName.CLEANUP, name="cleanup-messages", cron="0 2 * * *")
async def cleanup_messages(ctx: JobContext, job: CleanupJob | None = None) -> CleanupResult:
    job = job or CleanupJob()
    settings = ctx["settings"]
    started = job.created_at or now()
    retention = timedelta(days=job.retention_days or settings.message_retention_days)
    kinds: frozenset[CleanupKind] = (
        CLEANUP_KINDS if job.cleanup_type == "all" else CLEANUP_KINDS & {job.cleanup_type}
    )
    counts = CleanupCounts()
    if kinds:
        counts = await cleanup(
            await service(ctx, message_store),
            older_than=started - retention,
            batch_size=job.batch_size,
            dry_run=job.dry_run,
            kinds=kinds,
        )
    dead_letters = 0
    if job.cleanup_type in ("all", "dead_letters"):
        trimmed = await trim_expired_dead_letters(ctx, dry_run=job.dry_run)
        dead_letters = sum(trimmed.values())
    return CleanupResult(dry_run=job.dry_run, dead_letters=dead_letters, **counts.model_dump())
