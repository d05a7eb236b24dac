"""One worker per queue, its knobs set from the queue table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from arq.connections import RedisSettings

from config.queues import QueueName
from workers.registry import Hook, TaskRegistry
from workers.runner.execution import JobExecution
from workers.runner.worker import QueueWorker
from workers.runtime import Runtime
from workers.store.keys import Keys
from workers.store.serialization import job_decoder

logger = logging.getLogger(__name__)

# How often each worker refreshes its health key.
HEALTH_INTERVAL = 10


def guarded(name: str, hooks: Sequence[Hook]) -> Hook:
    """Run hooks so that one raising is logged instead of stopping the worker."""

    async def run(ctx: dict[str, Any]) -> None:
        for hook in hooks:
            try:
                await hook(ctx)
            except Exception:
                logger.exception("%s hook %s raised; the worker carries on", name, hook)

    return run


def build_worker(
    queue: QueueName,
    registry: TaskRegistry,
    runtime: Runtime,
    redis_settings: RedisSettings,
    *,
    burst: bool = False,
) -> QueueWorker:
    """The worker of `queue`; the supervisor, not the worker, handles signals.

    A job's lease is short and renewed while it runs (Supervisor._maintain), so a dead
    worker's job is taken over within a lease."""
    settings = runtime.settings
    config = settings.queues[queue]
    keys = Keys.of_settings(settings)
    tasks = registry.for_queue(queue)
    execution = JobExecution(queue, config, runtime, tasks)
    hooks = registry.hooks
    return QueueWorker(
        keys=keys,
        queue=queue,
        execution=execution,
        redis_settings=redis_settings,
        decoder=job_decoder([task.name for task in tasks]),
        worker_id=runtime.worker_id,
        max_jobs=config.concurrency,
        poll_delay_s=config.poll_delay,
        read_limit=config.read_limit,
        lease_s=settings.lease_seconds,
        keep_result_s=settings.keep_result,
        results_kept=settings.results_per_queue,
        errors_kept_s=int(settings.dead_letter_retention),
        health_key=keys.health(queue, runtime.worker_id),
        health_interval_s=HEALTH_INTERVAL,
        ctx={"queue": queue, "settings": settings, "runtime": runtime},
        hooks={
            name: guarded(name, getattr(hooks, name))
            for name in ("on_startup", "on_shutdown", "on_job_start", "on_job_end")
            if getattr(hooks, name)
        },
        burst=burst,
        rate_limit=config.rate_limit,
    )
