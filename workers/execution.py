"""One job's run: validate, run under its timeout, then retry with backoff or dead-letter.

arq retries nothing on a plain exception or a timeout and deletes what it cannot run; this
wrapper, which arq sees as the task function, makes those decisions instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal, cast

from arq.constants import retry_key_prefix
from arq.typing import WorkerCoroutine
from arq.worker import Function, Retry, func

from config.queues import QueueConfig, QueueName
from workers.backoff import retry_delay
from workers.context import JobContext
from workers.dead_letter import DeadLetterStore, Reason, try_error
from workers.errors import PayloadValidationError, PermanentError
from workers.keys import Keys
from workers.observation import JobObserver
from workers.priority import priority_of
from workers.progress import ProgressReporter
from workers.registry import Task
from workers.runtime import Runtime
from workers.serialization import UNDELIVERABLE_TASK

logger = logging.getLogger(__name__)

# arq's own timeout is a backstop a little past postroom's, so postroom's fires first and the
# job is retried (arq would fail it for good).
ARQ_TIMEOUT_MARGIN = 5.0
# arq refuses a job past its max_tries without running any hook and drops it; postroom makes
# that decision itself (and dead-letters), so arq's limit must never be reached.
ARQ_MAX_TRIES = 1_000_000
# How long a job's "running" marker lives: longer than any run, so only a crash leaves one.
MARKER_TTL_MS = 24 * 3600 * 1000
# The ctx key naming the worker whose run of the job died (the marker the claim found).
LOST_BY = "lost_by"

# How a run ended, for the queue's counters (see QueueWorker.finishing); a run put back by a
# shutdown has none.
Outcome = Literal["completed", "retried", "dead_lettered", "cancelled"]


class JobExecution:
    """Runs the tasks of one queue on behalf of arq."""

    def __init__(self, queue: QueueName, config: QueueConfig, runtime: Runtime) -> None:
        self.queue = queue
        self.config = config
        self.runtime = runtime
        self.keys = Keys(runtime.settings.key_prefix)
        # Filled as runs end, emptied by the Worker's finishing() as the run ends.
        self.outcomes: dict[str, Outcome] = {}
        # What a run's end line adds (its next try, a dead letter's reason); see observation.py.
        self.details: dict[str, str] = {}
        self.observer = JobObserver(queue, runtime, self.outcomes, self.details)

    def _dead_letters(self, ctx: dict[str, Any]) -> DeadLetterStore:
        # The Worker's own pool, which arq creates inside its main() and puts in ctx.
        return DeadLetterStore(ctx["redis"], self.keys, self.runtime.settings.dead_letter_retention)

    def arq_function(self, task: Task[Any, Any]) -> Function:
        policy = task.policy(self.config)

        # ctx is positional-only: a stored payload with a "ctx" key must fail validation, not
        # the call.
        async def run(ctx: dict[str, Any], /, **kwargs: Any) -> Any:
            ctx["task"] = task.name
            with self.observer.observe(task.name, ctx):
                return await self.run(task, policy, ctx, kwargs)

        run.__qualname__ = task.name
        return func(
            cast(WorkerCoroutine, run),  # arq's protocol does not spell positional-only
            name=task.name,
            timeout=policy.timeout + ARQ_TIMEOUT_MARGIN,
            max_tries=ARQ_MAX_TRIES,
            keep_result=self.runtime.settings.keep_result,
        )

    def undeliverable_function(self) -> Function:
        """The job every undecodable or unroutable job becomes (see serialization.job_decoder)."""

        async def undeliverable(
            ctx: dict[str, Any], task: str | None, reason: str, payload: Any, malformed: bool
        ) -> None:
            # Counted under the internal task's name: the stored one may be anything at all.
            with self.observer.observe(UNDELIVERABLE_TASK, ctx):
                error = PermanentError(reason)
                kind: Reason = "malformed" if malformed else "undeliverable"
                await self._dead_letter(ctx, task, payload, kind, error)
                raise error

        return func(undeliverable, name=UNDELIVERABLE_TASK, max_tries=ARQ_MAX_TRIES, timeout=30)

    async def run(
        self, task: Task[Any, Any], policy: QueueConfig, ctx: dict[str, Any], kwargs: dict[str, Any]
    ) -> Any:
        job_id: str = ctx["job_id"]
        redis = ctx["redis"]
        ctx["progress"] = ProgressReporter(
            redis, self.keys.progress(job_id), self.runtime.settings.keep_result
        )
        # The claim set the running marker, which outlives a dead worker: finding one there
        # means the last run never finished (see worker_scripts.CLAIM).
        lost_by: str | None = ctx.pop(LOST_BY, None)
        if lost_by is not None:
            await self._recovered(task, ctx, kwargs, lost_by)
        return await self._attempt(task, policy, ctx, kwargs)

    async def _recovered(
        self, task: Task[Any, Any], ctx: dict[str, Any], kwargs: dict[str, Any], lost_by: str
    ) -> None:
        """A crash is counted apart from tries; too many and the job is dead-lettered."""
        redis = ctx["redis"]
        job_id = ctx["job_id"]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(self.keys.recoveries(job_id))
            pipe.expire(self.keys.recoveries(job_id), MARKER_TTL_MS // 1000)
            pipe.decr(retry_key_prefix + job_id)  # the crashed try does not count
            recoveries, _, _ = await pipe.execute()
        ctx["job_try"] -= 1
        limit = self.runtime.settings.max_recoveries
        logger.warning(
            "job recovered from dead worker %s (%d/%d)",
            lost_by,
            recoveries,
            limit,
            extra=self.observer.fields(task.name, ctx),
        )
        if recoveries > limit:
            error = PermanentError(f"stalled: its worker died {recoveries} times while running it")
            await self._dead_letter(ctx, task.name, kwargs, "stalled", error)
            raise error

    async def _attempt(
        self, task: Task[Any, Any], policy: QueueConfig, ctx: dict[str, Any], kwargs: dict[str, Any]
    ) -> Any:
        job_id: str = ctx["job_id"]
        job_try: int = ctx["job_try"]
        try:
            arguments = task.decode(kwargs)
            async with asyncio.timeout(policy.timeout):
                result = await task.function(cast(JobContext, ctx), **arguments)
        except asyncio.CancelledError:
            if self.runtime.shutting_down:
                # Put back by a shutdown: this try does not count (arq counted it at pickup).
                await asyncio.shield(ctx["redis"].decr(retry_key_prefix + job_id))
            else:
                self.outcomes[job_id] = "cancelled"  # by a user (see Supervisor._maintain)
            raise
        except (PermanentError, PayloadValidationError) as exc:
            await asyncio.shield(self._dead_letter(ctx, task.name, kwargs, "permanent", exc))
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"task {task.name!r} timed out after {policy.timeout:g}s")
            if job_try < policy.max_tries:
                delay = retry_delay(policy.backoff, job_try)
                error = try_error(job_try, exc)
                await asyncio.shield(self._dead_letters(ctx).record_try_error(job_id, error))
                self.details[job_id] = f"try {job_try}/{policy.max_tries}, next in {delay:.2f}s"
                self.outcomes[job_id] = "retried"
                raise Retry(defer=delay) from exc
            await asyncio.shield(self._dead_letter(ctx, task.name, kwargs, "max-tries", exc))
            raise exc from None
        if job_try > 1:
            await self._dead_letters(ctx).forget_try_errors(job_id)
        self.outcomes[job_id] = "completed"
        return result

    async def _dead_letter(
        self,
        ctx: dict[str, Any],
        task: str | None,
        payload: Any,
        reason: Reason,
        exc: BaseException,
    ) -> None:
        job_try: int = ctx["job_try"]
        enqueued = ctx.get("enqueue_time")
        await self._dead_letters(ctx).add(
            job_id=ctx["job_id"],
            task=task,
            queue=self.queue,
            payload=payload,
            reason=reason,
            tries=job_try,
            last_error=try_error(job_try, exc),
            enqueued_at=enqueued.timestamp() if enqueued is not None else None,
            priority=priority_of(ctx["score"]),
        )
        self.outcomes[ctx["job_id"]] = "dead_lettered"
        self.details[ctx["job_id"]] = f"reason {reason}, after {job_try} tries"
