"""The cluster benchmark's task (scripts/cluster_bench.py): a no-op on message-delivery."""

from __future__ import annotations

from config.queues import QueueName
from workers import JobContext, task


@task(queue=QueueName.DELIVERY, name="bench.noop")
async def bench_noop(ctx: JobContext) -> None:
    """Nothing: what is measured is postroom's and Redis's cost per job."""
