"""One job's run: validate, run under its timeout, then decide its end as one value.

The decision is a `RunOutcome` (outcome.py): completed, retried with backoff, dead-lettered,
cancelled, put back by a shutdown or lost to another worker. Nothing here writes to Redis;
the worker writes the outcome with all its bookkeeping in one script call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any, cast

from arq.worker import Retry

from config.queues import QueueConfig, QueueName
from workers.context import LEASE_LOST, LEASE_TOKEN, LOST_BY, RECOVERIES, JobContext
from workers.error_text import own_words, shown
from workers.errors import PayloadValidationError, PermanentError, RateLimited
from workers.registry import Task
from workers.runner.backoff import retry_delay
from workers.runner.observation import JobObserver
from workers.runner.throttle import RateDeferral, Throttle
from workers.runtime import Runtime
from workers.store.cancellation import JobCancelledError
from workers.store.dead_letter import Reason, try_error
from workers.store.keys import Keys, QueueKeys
from workers.store.outcome import LOST, PUT_BACK, RunOutcome, completed, dead_lettered, deferred
from workers.store.priority import priority_of
from workers.store.progress import ProgressReporter
from workers.store.serialization import UNDELIVERABLE_TASK

logger = logging.getLogger(__name__)

# A provider's Retry-After longer than this defers by this much: it is asked again then.
MAX_RETRY_AFTER_S = 3600.0


def task_limit_name(task: str) -> str:
    """The named limit of a task's own `rate_limit` (its bucket in Keys.rate_limit)."""
    return f"task:{task}"


class JobExecution:
    """Runs the tasks of one queue and decides how each run ended."""

    def __init__(
        self,
        queue: QueueName,
        config: QueueConfig,
        runtime: Runtime,
        tasks: Iterable[Task[Any, Any]],
    ) -> None:
        self.queue = queue
        self.runtime = runtime
        self.observer = JobObserver(queue, runtime)
        self.tasks = {task.name: (task, task.policy(config)) for task in tasks}
        # Named limits (POSTROOM_RATE_LIMITS__*) and each task's own, as `task:<name>`.
        self.throttle = Throttle(
            Keys.of_settings(runtime.settings),
            runtime.settings.rate_limits,
            runtime.metrics.rate_waits,
        )
        for task, _ in self.tasks.values():
            if task.rate_limit is not None:
                self.throttle.add(task_limit_name(task.name), task.rate_limit)

    async def run(
        self,
        ctx: dict[str, Any],
        keys: QueueKeys,
        name: str,
        kwargs: dict[str, Any],
        stored: Any = None,
    ) -> RunOutcome:
        """Run the job of task `name` in the partition `keys` (from serialization.job_decoder:
        a registered task, or
        UNDELIVERABLE_TASK for a record that cannot run); never raises, but for a cancel of
        the calling task after its function returned (there is no await after it). `stored`:
        the kwargs as stored (sealed), what a dead letter keeps (default `kwargs`)."""
        stored = kwargs if stored is None else stored
        if name == UNDELIVERABLE_TASK:
            # Counted under the internal task's name: the stored one may be anything at all.
            started = self.observer.started(UNDELIVERABLE_TASK, ctx, kwargs.get("payload"))
            outcome = self._undeliverable(ctx, **kwargs)
        else:
            task, policy = self.tasks[name]
            ctx["task"] = name
            ctx["priority"] = priority_of(ctx["score"])  # a task's, for its follow-up jobs
            ctx["progress"] = ProgressReporter(
                ctx["redis"],
                keys.progress(ctx["job_id"]),
                self.runtime.settings.keep_result,
                fence=(keys.running(ctx["job_id"]), ctx[LEASE_TOKEN]),
                seal=functools.partial(
                    self.runtime.sealer.seal,
                    job_id=ctx["job_id"],
                    queue=self.queue,
                    field="progress",
                ),
            )
            member = f"{keys.tag}:{ctx['job_id']}"  # the job, in the limits' held slots
            ctx["throttle"] = self.throttle.bind(ctx["redis"], member, policy.timeout)
            started = self.observer.started(name, ctx, kwargs)
            outcome = await self._run(task, policy, ctx, kwargs, stored, keys)
        self.observer.ended(started, ctx, outcome)
        return outcome

    def _undeliverable(
        self,
        ctx: dict[str, Any],
        task: str | None,
        reason: str,
        payload: Any,
        malformed: bool,
        unsealable: bool = False,
    ) -> RunOutcome:
        kind: Reason = "malformed" if malformed else "undeliverable"
        if unsealable:
            kind = "unsealable"
        return self._dead_letter(ctx, task, payload, kind, own_words(PermanentError(reason)))

    async def _run(
        self,
        task: Task[Any, Any],
        policy: QueueConfig,
        ctx: dict[str, Any],
        kwargs: dict[str, Any],
        stored: Any,
        keys: QueueKeys,
    ) -> RunOutcome:
        # The claim set the running marker, which outlives a dead worker: finding one there
        # means the last run never finished (see worker_scripts.CLAIM).
        lost_by: str | None = ctx.pop(LOST_BY, None)
        if lost_by is not None and (stalled := self._recovered(task, ctx, stored, lost_by)):
            return stalled
        job_try: int = ctx["job_try"]
        try:
            arguments = task.decode(kwargs)
            async with asyncio.timeout(policy.timeout):
                if task.rate_limit is not None:
                    await ctx["throttle"](task_limit_name(task.name))
                result = await task.function(cast(JobContext, ctx), **arguments)
        except asyncio.CancelledError:
            return self._stopped(ctx)
        except (PermanentError, PayloadValidationError) as exc:
            return self._dead_letter(ctx, task.name, stored, "permanent", exc)
        except RateDeferral as exc:
            return deferred(exc.delay_s, f"rate limit {exc.name!r}: waiting for its start slot")
        except RateLimited as exc:
            return await self._provider_limited(task, ctx, (kwargs, stored), keys, exc)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = own_words(
                    TimeoutError(f"task {task.name!r} timed out after {policy.timeout:g}s")
                )
            if job_try >= policy.max_tries:
                return self._dead_letter(ctx, task.name, stored, "max-tries", exc)
            delay = retry_delay(policy.backoff, job_try)
            if isinstance(exc, Retry) and exc.defer_score:  # arq's own way to ask for a retry
                delay = exc.defer_score / 1000
            return RunOutcome(
                "retried",
                f"try {job_try}/{policy.max_tries}, next in {delay:.2f}s",
                exception=exc,
                retry_in_s=delay,
                error=try_error(job_try, exc),
            )
        return completed(result)

    async def _provider_limited(
        self,
        task: Task[Any, Any],
        ctx: dict[str, Any],
        payload: tuple[dict[str, Any], Any],
        keys: QueueKeys,
        exc: RateLimited,
    ) -> RunOutcome:
        """The provider said "too many requests": defer the job by its Retry-After, spending
        no try, at most POSTROOM_MAX_RATE_LIMITED times (counted in Redis, so across workers;
        FINISH drops the count when the job ends); then it is dead-lettered as rate-limited.
        `payload`: the job's arguments, opened and as stored."""
        kwargs, stored = payload
        settings = self.runtime.settings
        counter = keys.rate_limited(ctx["job_id"])
        try:
            times = int(await ctx["redis"].incr(counter))
            await ctx["redis"].expire(counter, int(settings.dead_letter_retention))
        except Exception as redis_error:  # Redis away: defer uncounted (its end waits anyway)
            logger.warning(
                "job %s: its 429 deferral could not be counted (%s)",
                ctx["job_id"],
                redis_error,
                extra=self.observer.fields(task.name, ctx),
            )
            times = 1
        if times > settings.max_rate_limited:
            limited = (
                f"rate-limited: deferred {times - 1} times by its provider's 429, the most "
                "POSTROOM_MAX_RATE_LIMITED allows; last: {}"
            )
            error = PermanentError(limited.format(exc))
            own_words(error, limited.format(shown(exc, details=False)))
            return self._dead_letter(ctx, task.name, stored, "rate-limited", error)
        delay = min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER_S)
        said = self.observer.describe(exc, kwargs)
        why = f"{said} ({times}/{settings.max_rate_limited} deferrals)"
        return deferred(delay, why, exc)

    def _stopped(self, ctx: dict[str, Any]) -> RunOutcome:
        """A run its worker stopped: lost to another worker (never finished here), put back by
        a shutdown (its try refunded), or cancelled by a user (Supervisor._cancel_requested)."""
        if ctx.get(LEASE_LOST):
            return LOST
        if self.runtime.shutting_down:
            return PUT_BACK
        return RunOutcome("cancelled", exception=JobCancelledError("cancelled while running"))

    def _recovered(
        self, task: Task[Any, Any], ctx: dict[str, Any], stored: Any, lost_by: str
    ) -> RunOutcome | None:
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
        if recoveries <= limit:
            return None
        error = own_words(
            PermanentError(f"stalled: its worker died {recoveries} times while running it")
        )
        return self._dead_letter(ctx, task.name, stored, "stalled", error)

    def _dead_letter(
        self,
        ctx: dict[str, Any],
        task: str | None,
        payload: Any,
        reason: Reason,
        exc: BaseException,
    ) -> RunOutcome:
        enqueued = ctx.get("enqueue_time")
        return dead_lettered(
            job_id=ctx["job_id"],
            queue=self.queue,
            task=task,
            payload=payload,
            reason=reason,
            job_try=ctx["job_try"],
            enqueued_at=enqueued.timestamp() if enqueued is not None else None,
            score=ctx["score"],
            exc=exc,
        )
