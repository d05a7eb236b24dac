"""arq's run_job, for a job the claim script has already read and counted the try of.

arq's run_job starts with a MULTI that reads the job and counts the try: a round trip per job,
which postroom's claim (worker_scripts.CLAIM) does for a whole batch. This is the rest of
arq's run_job, unchanged in what it decides (timeouts, Retry, aborts, results, hooks) and in
the per-job log lines it writes (arq's own logger and messages).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import args_to_string, ms_to_datetime, timestamp_ms, truncate
from arq.worker import Function, JobExecutionFailed, Retry, RetryJob, Worker

from workers.context import LEASE_LOST, LEASE_TOKEN, LOST_BY, RECOVERIES
from workers.keys import QueueKeys
from workers.priority import priority_of
from workers.scripts import ScriptBatcher
from workers.transient import is_transient
from workers.worker_scripts import RETRY_TTL_S

logger = logging.getLogger("arq.worker")

_NO_RESULT = object()


class Claim(NamedTuple):
    """One claimed job, with what the claim script read for its run."""

    job_id: str
    score: int
    payload: bytes | None  # None: the job's data expired
    job_try: int
    lost_by: str | None  # the lease token of this job's run that never finished, if one did
    token: str  # this run's lease token: it fences every write the run makes
    recoveries: int  # how many of the job's runs never finished


class Run(NamedTuple):
    """A claimed job decoded and ready to start."""

    function: Function
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    job_try: int
    enqueue_ms: int


class ClaimedRunWorker(Worker):
    """arq's Worker running claimed jobs; QueueWorker claims them and finishes their runs."""

    keys: QueueKeys
    # The runs' ends, a batch per call of the queue's FINISH script (QueueWorker.main).
    _finish: ScriptBatcher | None = None
    # The ctx of each job whose run is under way here (see Supervisor._leave_lost).
    running_ctx: dict[str, dict[str, Any]]

    def end_of_run(
        self,
        claim: Claim,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
    ) -> Sequence[Any]:
        """What arq's finish_job would write, as one call of the FINISH script (QueueWorker)."""
        raise NotImplementedError

    async def write_end(self, claim: Claim, call: Sequence[Any]) -> None:
        """Write a run's end, however long Redis is away: repeated with backoff while the
        errors are transient (a restart, a failover), so a run is never left without its
        outcome. Fenced by the run's lease token, a repeat cannot write it twice, nor over
        another worker's run of the job; when this worker stops first, the job's lease
        lapses and another worker runs it again."""
        assert self._finish is not None, "a run finished before main()"
        delay, failures = 0.05, 0
        while True:
            try:
                refused = await asyncio.shield(self._finish.submit(call))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                if failures == 1:
                    logger.warning(
                        "job %s: its end could not be written (%s: %s); retrying until Redis "
                        "answers",
                        claim.job_id,
                        type(exc).__name__,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if claim.job_id.encode() in refused:
                # After a failure the first call may have been written with its reply lost.
                logger.log(
                    logging.INFO if failures else logging.WARNING,
                    "job %s: its end was not written: %s",
                    claim.job_id,
                    "written before, or the job was taken over meanwhile"
                    if failures
                    else "another worker took the job over (this run's lease had lapsed)",
                )
            elif failures:
                logger.info("job %s: its end was written after %d failures", claim.job_id, failures)
            return

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
            "priority": priority_of(claim.score),
            LEASE_TOKEN: claim.token,
            LOST_BY: claim.lost_by,
            RECOVERIES: claim.recoveries,
        }
        self.running_ctx[job_id] = ctx
        try:
            await self._run(claim, run, ctx)
        finally:
            del self.running_ctx[job_id]

    async def _run(self, claim: Claim, run: Run, ctx: dict[str, Any]) -> None:
        job_id = claim.job_id
        if self.on_job_start:
            await self.on_job_start(ctx)
        start_ms = timestamp_ms()
        ref = f"{job_id}:{run.name}"
        result: Any = _NO_RESULT
        finish, success, incr_score = False, False, None
        task = asyncio.current_task()
        assert task is not None
        try:
            if logger.isEnabledFor(logging.INFO):
                self._log_start(claim, run, ref, start_ms)
            timeout_s = run.function.timeout_s
            if timeout_s is None:
                timeout_s = self.job_timeout_s
            # The function runs in this task, not in one of its own as in arq's run_job (a
            # task and wait_for's future and callbacks saved per job). It is listed in
            # job_tasks only while the function runs, so a cancel request (which cancels
            # what job_tasks lists) can only stop the function, never this run's finish.
            self.job_tasks[job_id] = task
            try:
                async with asyncio.timeout(timeout_s):
                    result = await run.function.coroutine(ctx, *run.args, **run.kwargs)
            finally:
                del self.job_tasks[job_id]
        except (Exception, asyncio.CancelledError) as e:
            finished_ms = timestamp_ms()
            if isinstance(e, asyncio.CancelledError) and job_id in self.aborting_tasks:
                task.uncancel()  # the abort's cancel is handled here: the run goes on to finish
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
                self.keys.queue_name.value,
                job_id=job_id,
                serializer=self.job_serializer,
            )
        if self.on_job_end:
            await self.on_job_end(ctx)
        if ctx.get(LEASE_LOST):
            return  # the job is another worker's now: nothing of this run is written
        call = self.end_of_run(claim, finish, result_data, keep_s, keep_forever, incr_score)
        await self.write_end(claim, call)
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
            await self.pool.setex(self.keys.tries(job_id), RETRY_TTL_S, str(job_try))
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
            queue_name=self.keys.queue_name.value,
            job_id=claim.job_id,
        )
        forever, keep_s = self.keep_result_forever, self.keep_result_s
        data = result_data if forever or keep_s > 0 else None
        await self.write_end(claim, self.end_of_run(claim, True, data, keep_s, forever, None))
