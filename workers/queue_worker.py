"""One arq `Worker` per queue, its knobs set from the queue table instead of arq's defaults."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC
from typing import Any, cast

from arq.connections import RedisSettings
from arq.typing import StartupShutdown

from config.queues import QueueName
from workers.execution import ARQ_MAX_TRIES, ARQ_TIMEOUT_MARGIN, JobExecution
from workers.keys import Keys
from workers.registry import Hook, TaskRegistry
from workers.runtime import Runtime
from workers.serialization import dumps, job_decoder
from workers.worker import QueueWorker

logger = logging.getLogger(__name__)

# How often each worker refreshes its health key (arq's default is hourly).
HEALTH_INTERVAL = 10


def guarded(name: str, hooks: Sequence[Hook]) -> StartupShutdown:
    """Run hooks so that one raising is logged instead of stopping the worker (arq would)."""

    async def run(ctx: dict[str, Any]) -> None:
        for hook in hooks:
            try:
                await hook(ctx)
            except Exception:
                logger.exception("%s hook %s raised; the worker carries on", name, hook)

    return cast(StartupShutdown, run)


def build_worker(
    queue: QueueName,
    registry: TaskRegistry,
    runtime: Runtime,
    redis_settings: RedisSettings,
    *,
    burst: bool = False,
) -> QueueWorker:
    """The arq Worker of `queue`; the supervisor, not the Worker, handles signals."""
    settings = runtime.settings
    config = settings.queues[queue]
    keys = Keys(settings.key_prefix)
    execution = JobExecution(queue, config, runtime)
    functions = [execution.arq_function(task) for task in registry.for_queue(queue)]
    functions.append(execution.undeliverable_function())

    worker = QueueWorker(
        queue=queue,
        keys=keys.of(queue),
        outcomes=execution.outcomes,
        results_per_queue=settings.results_per_queue,
        errors_kept_s=int(settings.dead_letter_retention),
        worker_id=runtime.worker_id,
        functions=functions,
        queue_name=keys.of(queue).queue,
        redis_settings=redis_settings,
        burst=burst,
        handle_signals=False,
        max_jobs=config.concurrency,
        job_timeout=config.timeout + ARQ_TIMEOUT_MARGIN,
        keep_result=settings.keep_result,
        poll_delay=config.poll_delay,
        queue_read_limit=config.read_limit,
        max_tries=ARQ_MAX_TRIES,
        health_check_interval=HEALTH_INTERVAL,
        health_check_key=keys.health(queue, runtime.worker_id),
        ctx={"queue": queue, "settings": settings, "runtime": runtime},
        on_startup=guarded("on_startup", registry.hooks.on_startup),
        on_shutdown=guarded("on_shutdown", registry.hooks.on_shutdown),
        on_job_start=guarded("on_job_start", registry.hooks.on_job_start),
        on_job_end=guarded("on_job_end", registry.hooks.on_job_end),
        job_serializer=dumps,
        job_deserializer=job_decoder([f.name for f in functions]),
        timezone=UTC,
        log_results=False,
    )
    # arq marks a claimed job "in progress" for the longest timeout + 10 s and never renews
    # it, so a dead worker's job waits that long. Postroom uses a short lease instead, which
    # the supervisor renews while the job runs (see Supervisor._maintain).
    worker.in_progress_timeout_s = settings.lease_seconds
    return worker
