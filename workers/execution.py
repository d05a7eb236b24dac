"""One job's run: validate, run under its timeout, then retry with backoff or dead-letter.

arq retries nothing on a plain exception or a timeout and deletes what it cannot run; this
wrapper, which arq sees as the task function, makes those decisions instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from arq.typing import WorkerCoroutine
from arq.worker import Function, Retry, func

from config.queues import QueueConfig, QueueName
from workers.backoff import retry_delay
from workers.context import LEASE_LOST, LEASE_TOKEN, LOST_BY, RECOVERIES, JobContext
from workers.dead_letter import DeadLetter, Reason, try_error
from workers.errors import PayloadValidationError, PermanentError
from workers.keys import Keys
from workers.observation import JobObserver
from workers.outcome import COMPLETED, RunOutcome
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


class JobExecution:
    """Runs the tasks of one queue on behalf of arq."""

    def __init__(self, queue: QueueName, config: QueueConfig, runtime: Runtime) -> None:
        self.queue = queue
        self.config = config
        self.runtime = runtime
        self.keys = Keys(runtime.settings.key_prefix).of(queue)
        # Filled as runs end, emptied by QueueWorker.end_of_run as the run ends.
        self.outcomes: dict[str, RunOutcome] = {}
        self.observer = JobObserver(queue, runtime, self.outcomes)

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
                self._dead_letter(ctx, task, payload, kind, error)
                raise error

        return func(undeliverable, name=UNDELIVERABLE_TASK, max_tries=ARQ_MAX_TRIES, timeout=30)

    async def run(
        self, task: Task[Any, Any], policy: QueueConfig, ctx: dict[str, Any], kwargs: dict[str, Any]
    ) -> Any:
        job_id: str = ctx["job_id"]
        ctx["progress"] = ProgressReporter(
            ctx["redis"],
            self.keys.progress(job_id),
            self.runtime.settings.keep_result,
            fence=(self.keys.running(job_id), ctx[LEASE_TOKEN]),
        )
        # The claim set the running marker, which outlives a dead worker: finding one there
        # means the last run never finished (see worker_scripts.CLAIM).
        lost_by: str | None = ctx.pop(LOST_BY, None)
        if lost_by is not None:
            self._recovered(task, ctx, kwargs, lost_by)
        return await self._attempt(task, policy, ctx, kwargs)

    def _recovered(
        self, task: Task[Any, Any], ctx: dict[str, Any], kwargs: dict[str, Any], lost_by: str
    ) -> None:
        """A crash is counted apart from tries (the claim did both); too many and the job is
        dead-lettered. A run whose worker lived on but lost its lease (Redis unreachable) is
        taken back from the count by that worker when it learns so (worker_scripts.RENEW)."""
        recoveries: int = ctx[RECOVERIES]
        limit = self.runtime.settings.max_recoveries
        logger.warning(
            "job recovered from the unfinished run %s (%d/%d)",
            lost_by,
            recoveries,
            limit,
            extra=self.observer.fields(task.name, ctx),
        )
        if recoveries > limit:
            error = PermanentError(f"stalled: its worker died {recoveries} times while running it")
            self._dead_letter(ctx, task.name, kwargs, "stalled", error)
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
            # Put back by a shutdown (no outcome: its try is refunded), lost to another
            # worker (never finished here), or cancelled by a user (Supervisor._maintain).
            if not self.runtime.shutting_down and not ctx.get(LEASE_LOST):
                self.outcomes[job_id] = RunOutcome("cancelled")
            raise
        except (PermanentError, PayloadValidationError) as exc:
            self._dead_letter(ctx, task.name, kwargs, "permanent", exc)
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"task {task.name!r} timed out after {policy.timeout:g}s")
            if job_try < policy.max_tries:
                delay = retry_delay(policy.backoff, job_try)
                self.outcomes[job_id] = RunOutcome(
                    "retried",
                    f"try {job_try}/{policy.max_tries}, next in {delay:.2f}s",
                    error=try_error(job_try, exc),
                )
                raise Retry(defer=delay) from exc
            self._dead_letter(ctx, task.name, kwargs, "max-tries", exc)
            raise exc from None
        self.outcomes[job_id] = COMPLETED
        return result

    def _dead_letter(
        self,
        ctx: dict[str, Any],
        task: str | None,
        payload: Any,
        reason: Reason,
        exc: BaseException,
    ) -> None:
        """Decide the run's end: dead-lettered. Its worker writes the letter with the run's end
        (its error list: the try errors kept so far and this one's)."""
        job_try: int = ctx["job_try"]
        enqueued = ctx.get("enqueue_time")
        letter = DeadLetter(
            job_id=ctx["job_id"],
            task=task,
            queue=self.queue,
            payload=payload,
            reason=reason,
            tries=job_try,
            errors=[],
            enqueued_at=enqueued.timestamp() if enqueued is not None else None,
            failed_at=time.time(),
            priority=priority_of(ctx["score"]),
        )
        self.outcomes[ctx["job_id"]] = RunOutcome(
            "dead_lettered",
            f"reason {reason}, after {job_try} tries",
            error=try_error(job_try, exc),
            letter=letter,
        )
