"""arq's Worker, claiming jobs by priority, in batches, and woken by enqueues.

arq reads up to `queue_read_limit` ids at once and then waits, holding that list, for slots to
free: a job enqueued meanwhile waits behind all of them whatever its priority; it claims each
job with its own WATCH/MULTI round trips, reads it and counts its try in another, and an idle
worker notices a new job only at its next poll tick. This Worker claims, in one script call,
no more jobs than it has free slots (in priority order, see priority.py) with everything their
runs need (worker_scripts.CLAIM); claims again as soon as a slot frees while more work was
ready; finishes each run in one script call; and, idle, blocks on its queue's wake list, so
an enqueue starts at once (at most a poll tick later: delayed jobs and retries are promoted
by the claim, which runs at least every tick).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.constants import retry_key_prefix as retry_prefix
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import args_to_string, ms_to_datetime, timestamp_ms, to_ms, truncate
from arq.worker import Function, JobExecutionFailed, Retry, RetryJob, Worker

from config.queues import QueueName
from workers.enqueue import wake_key
from workers.execution import LOST_BY, MARKER_TTL_MS, Outcome
from workers.keys import Keys
from workers.waiting import sleep_unless
from workers.worker_scripts import CLAIM, FINISH, RETRY_TTL_S

# arq's own logger and messages for the per-job lines, so they read (and filter) as before.
logger = logging.getLogger("arq.worker")

# The counters each outcome moves (see QueueStats): `failed` counts every failed try.
COUNTERS: dict[Outcome | None, tuple[str, ...]] = {
    "completed": ("completed",),
    "retried": ("retried", "failed"),
    "dead_lettered": ("dead_lettered", "failed"),
    "cancelled": ("cancelled",),
    None: ("failed",),  # arq's rules failed the job (it outlived arq's own timeout, say)
}

_NO_RESULT = object()


class Claim(NamedTuple):
    """One claimed job, with what the claim script read for its run."""

    job_id: str
    score: int
    payload: bytes | None  # None: the job's data expired
    job_try: int
    lost_by: str | None  # the worker whose run of this job died, if one did


class Run(NamedTuple):
    """A claimed job decoded and ready to start."""

    function: Function
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    job_try: int
    enqueue_ms: int


class QueueWorker(Worker):
    """One queue's arq Worker with priority-ordered reads; built by queue_worker.build_worker."""

    def __init__(
        self,
        *args: Any,
        queue: QueueName,
        keys: Keys,
        outcomes: dict[str, Outcome],
        results_per_queue: int,
        worker_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.queue = queue
        self.keys = keys
        self.outcomes = outcomes
        self.results_per_queue = results_per_queue
        self.worker_id = worker_id
        self._slot_freed = asyncio.Event()
        # Whether the last claim left ready jobs unread for want of free slots.
        self._more_ready = False

    async def main(self) -> None:
        """arq's main(), with a wait that ends early on an enqueue or a freed slot (`_wait`)."""
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        for script in (CLAIM, FINISH):  # once here; reloaded only after a NOSCRIPT
            await script.load(self.pool)
        logger.info("Starting worker for %d functions: %s", len(self.functions), self.queue_name)
        await log_redis_info(self.pool, logger.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        while True:
            await self._poll_iteration()
            if self.burst and await self._burst_done():
                return
            await self._wait()

    async def _burst_done(self) -> bool:
        if 0 <= self.max_burst_jobs <= self._jobs_started() or not await self.pool.zcard(
            self.queue_name
        ):
            await asyncio.gather(*self.tasks.values())
            return True
        return False

    async def _wait(self) -> None:
        """Until there may be a job to claim, and never longer than a poll tick.

        With ready jobs left unread, or no free slot, that is when a slot frees; otherwise
        when an enqueue leaves a wake token (BLPOP holds one pooled connection meanwhile).
        """
        tick = self.poll_delay_s
        busy = self.job_counter >= self.max_jobs
        if (self._more_ready and not busy) or tick <= 0:
            return
        if self._more_ready or busy or not self.allow_pick_jobs:
            await sleep_unless(self._slot_freed, tick)
        else:
            # redis-py types blpop's timeout as whole seconds; Redis takes a decimal.
            await self.pool.execute_command("BLPOP", wake_key(self.queue_name), tick)  # type: ignore[no-untyped-call]

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def _poll_iteration(self) -> None:
        free = self.max_jobs - self.job_counter
        self._more_ready = False
        self._slot_freed.clear()  # before the claim: a slot freed after it ends the wait
        if self.allow_pick_jobs and free > 0:
            count = min(free, self.queue_read_limit)
            if self.burst and self.max_burst_jobs >= 0:
                count = min(count, self.max_burst_jobs - self._jobs_started())
            if count > 0:
                await self._claim_and_start(count)
        for job_id, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[job_id]
                t.result()  # re-raises what a run raised, as arq does
        await self.heart_beat()

    async def _claim_and_start(self, count: int) -> None:
        args: list[str | int] = [
            timestamp_ms(),
            count,
            self.queue_read_limit,
            int(self.in_progress_timeout_s * 1000),
            in_progress_key_prefix,
            job_key_prefix,
            retry_prefix,
            self.keys.running(""),
            self.worker_id,
            MARKER_TTL_MS,
            RETRY_TTL_S,
        ]
        keys = [self.queue_name, self.keys.active(self.queue)]
        claimed = await CLAIM(self.pool, keys, args)
        self._more_ready = len(claimed) == 5 * count
        for i in range(0, len(claimed), 5):
            raw_id, raw_score, payload, job_try, lost_by = claimed[i : i + 5]
            await self.sem.acquire()  # never waits: no more jobs were claimed than free slots
            self.job_counter += 1
            claim = Claim(
                raw_id.decode(),
                int(float(raw_score)),
                payload,
                int(job_try),
                None if lost_by is None else lost_by.decode(),
            )
            task = self.loop.create_task(self.run_claimed(claim))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[claim.job_id] = task

    async def run_claimed(self, claim: Claim) -> None:
        """arq's run_job, less the round trip that read the job and counted the try."""
        run = await self._decode(claim)
        if run is None:
            return
        job_id = claim.job_id
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": run.job_try,
            "enqueue_time": ms_to_datetime(run.enqueue_ms),
            "score": claim.score,
            LOST_BY: claim.lost_by,
        }
        if self.on_job_start:
            await self.on_job_start(ctx)
        start_ms = timestamp_ms()
        ref = f"{job_id}:{run.name}"
        result: Any = _NO_RESULT
        finish, success, incr_score = False, False, None
        try:
            if logger.isEnabledFor(logging.INFO):
                self._log_start(claim, run, ref, start_ms)
            coroutine = run.function.coroutine(ctx, *run.args, **run.kwargs)
            self.job_tasks[job_id] = task = self.loop.create_task(coroutine)
            timeout_s = run.function.timeout_s
            if timeout_s is None:
                timeout_s = self.job_timeout_s
            try:
                result = await asyncio.wait_for(task, timeout_s)
            finally:
                del self.job_tasks[job_id]
        except (Exception, asyncio.CancelledError) as e:
            finished_ms = timestamp_ms()
            result, finish, incr_score = self._run_failed(claim, ref, e, finished_ms - start_ms)
        else:
            finished_ms = timestamp_ms()
            shown = "" if result is None or not self.log_results else truncate(repr(result))
            logger.info("%6.2fs ← %s ● %s", (finished_ms - start_ms) / 1000, ref, shown)
            finish = success = True
            self.jobs_complete += 1
        result_data = None
        keep_s, keep_forever = run.function.keep_result_s, run.function.keep_result_forever
        if keep_s is None:
            keep_s = self.keep_result_s
        if keep_forever is None:
            keep_forever = self.keep_result_forever
        if result is not _NO_RESULT and (keep_forever or keep_s > 0):
            result_data = serialize_result(
                run.name,
                run.args,
                run.kwargs,
                run.job_try,
                run.enqueue_ms,
                success,
                result,
                start_ms,
                finished_ms,
                ref,
                self.queue_name,
                job_id=job_id,
                serializer=self.job_serializer,
            )
        if self.on_job_end:
            await self.on_job_end(ctx)
        finishing = self.finish_job(
            job_id, finish, result_data, keep_s, keep_forever, incr_score, None
        )
        await asyncio.shield(finishing)
        if self.after_job_end:
            await self.after_job_end(ctx)

    def _log_start(self, claim: Claim, run: Run, ref: str, start_ms: int) -> None:
        extra = f" try={run.job_try}" if run.job_try > 1 else ""
        if start_ms - claim.score > 1200:
            extra += f" delayed={(start_ms - claim.score) / 1000:0.2f}s"
        s = args_to_string(run.args, run.kwargs)
        logger.info("%6.2fs → %s(%s)%s", (start_ms - run.enqueue_ms) / 1000, ref, s, extra)

    def _run_failed(
        self, claim: Claim, ref: str, e: BaseException, took_ms: int
    ) -> tuple[Any, bool, int | None]:
        """arq's decision for a run that raised: (result, finish, retry score increment)."""
        t = took_ms / 1000
        if self.retry_jobs and isinstance(e, Retry):
            logger.info("%6.2fs ↻ %s retrying job in %0.2fs", t, ref, (e.defer_score or 0) / 1000)
            self.jobs_retried += 1
            if e.defer_score:
                return _NO_RESULT, False, e.defer_score + (timestamp_ms() - claim.score)
            return _NO_RESULT, False, e.defer_score
        if claim.job_id in self.aborting_tasks and isinstance(e, asyncio.CancelledError):
            logger.info("%6.2fs ⊘ %s aborted", t, ref)
            self.aborting_tasks.remove(claim.job_id)
            self.jobs_failed += 1
            return e, True, None
        if self.retry_jobs and isinstance(e, asyncio.CancelledError | RetryJob):
            logger.info("%6.2fs ↻ %s cancelled, will be run again", t, ref)
            self.jobs_retried += 1
            return _NO_RESULT, False, None
        extra = getattr(e, "extra", None)
        logger.exception(
            "%6.2fs ! %s failed, %s: %s",
            t,
            ref,
            e.__class__.__name__,
            e,
            extra={"extra": extra() if callable(extra) else extra},
        )
        self.jobs_failed += 1
        return e, True, None

    async def _decode(self, claim: Claim) -> Run | None:
        """The job's run, or None when it cannot run (then it is already failed, as arq does)."""
        job_id, start_ms = claim.job_id, timestamp_ms()
        if claim.payload is None:
            logger.warning("job %s expired", job_id)
            await self._fail(claim, JobExecutionFailed("job expired"), start_ms)
            return None
        try:
            name, args, kwargs, enqueue_try, enqueue_ms = deserialize_job_raw(
                claim.payload, deserializer=self.job_deserializer
            )
        except SerializationError as e:
            logger.exception("deserializing job %s failed", job_id)
            await self._fail(claim, e, start_ms)
            return None
        known = (start_ms, name, args, kwargs, enqueue_ms)
        function = self.functions.get(name)
        if not isinstance(function, Function):  # arq's CronJobs are not used: see cron.py
            logger.warning("job %s, function %r not found", job_id, name)
            await self._fail(claim, JobExecutionFailed(f"function {name!r} not found"), *known)
            return None
        job_try = claim.job_try
        if enqueue_try and enqueue_try > job_try:  # arq's `_job_try` enqueue option
            job_try = enqueue_try
            await self.pool.setex(retry_prefix + job_id, RETRY_TTL_S, str(job_try))
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            t = (timestamp_ms() - enqueue_ms) / 1000
            logger.warning("%6.2fs ! %s:%s max retries %d exceeded", t, job_id, name, max_tries)
            exceeded = JobExecutionFailed(f"max {max_tries} retries exceeded")
            await self._fail(claim, exceeded, *known, job_try)
            return None
        return Run(function, name, args, kwargs, job_try, enqueue_ms)

    async def _fail(
        self,
        claim: Claim,
        exc: BaseException,
        start_ms: int,
        name: str = "<unknown>",
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        enqueue_ms: int = 0,
        job_try: int | None = None,
    ) -> None:
        """Store a failed result for a job that could not run, as arq's job_failed does."""
        self.jobs_failed += 1
        result_data = serialize_result(
            function=name,
            args=args,
            kwargs=kwargs or {},
            job_try=claim.job_try if job_try is None else job_try,
            enqueue_time_ms=enqueue_ms,
            success=False,
            result=exc,
            start_ms=start_ms,
            finished_ms=timestamp_ms(),
            ref=f"{claim.job_id}:{name}",
            serializer=self.job_serializer,
            queue_name=self.queue_name,
            job_id=claim.job_id,
        )
        await asyncio.shield(self.finish_failed_job(claim.job_id, result_data))

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq's, plus postroom's bookkeeping (see finish_job); counted as failed."""
        forever, keep_s = self.keep_result_forever, self.keep_result_s
        data = result_data if forever or keep_s > 0 else None
        await self.finish_job(job_id, True, data, keep_s, forever, None, None)

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's finish_job, plus postroom's bookkeeping, in one script call (FINISH).

        A retry waits out of its band and keeps its priority; the result joins the queue's
        result index; the counters move; the job leaves the active set. `keep_in_progress`
        (arq's cron jobs) does not occur: postroom schedules crons itself.
        """
        outcome = self.outcomes.pop(job_id, None)
        counters = COUNTERS[outcome] if finish or outcome is not None else ()
        what = "finish" if finish else "retry" if incr_score else "release"
        now = timestamp_ms()
        keep_ms = to_ms(result_timeout_s) or 0
        keys = [
            self.queue_name,
            self.keys.active(self.queue),
            self.keys.stats(self.queue),
            self.keys.results(self.queue),
            in_progress_key_prefix + job_id,
            self.keys.running(job_id),
            retry_prefix + job_id,
            job_key_prefix + job_id,
            result_key_prefix + job_id,
        ]
        args: list[Any] = [
            job_id,
            what,
            result_data or b"",
            "" if keep_result_forever else keep_ms,
            incr_score or 0,
            now,
            self.results_per_queue,
            now - keep_ms if keep_ms else 0,
            result_key_prefix,
            *counters,
        ]
        await FINISH(self.pool, keys, args)
