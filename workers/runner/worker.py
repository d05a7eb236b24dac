"""One queue's worker: claim ready jobs, run them, write their ends.

The loop is postroom's own; arq supplies the connection pool and the encoding of results.
Each turn claims, in one script call (worker_scripts.CLAIM), no more jobs than there are free
slots, in priority order (priority.py), with everything their runs need; each run's end is
decided once (execution.py) and written in one call of the queue's FINISH script, batched
with the runs that ended with it (claimed_run.py). Idle, the worker blocks on its queue's wake
list, so an enqueue starts at once (at most a poll tick later: delayed jobs and retries are
promoted by the claim, which runs at least every tick).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.utils import ms_to_datetime, timestamp_ms
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from config.queues import QueueName
from config.rate_limits import RateLimit
from workers.connection.redis_pool import close_pool, on_cluster, open_pool
from workers.context import LEASE_LOST, LEASE_TOKEN, LOST_BY, RECOVERIES
from workers.registry import Hook
from workers.runner.claimed_run import Claim, EndWriter, Run, decode
from workers.runner.execution import JobExecution
from workers.runner.waiting import sleep_unless
from workers.store.dead_letter import Reason
from workers.store.keys import Keys, QueueKeys
from workers.store.outcome import PUT_BACK, RunOutcome, dead_lettered
from workers.store.rate_limit import RATE_LIMIT, take
from workers.store.scripts import ScriptBatcher, pack
from workers.store.worker_scripts import (
    CLAIM,
    CLAIMED_FIELDS,
    PARTITIONS_USED,
    RENEW,
    RETRY_TTL_S,
    finish_script,
)

logger = logging.getLogger(__name__)

# How long a job's "running" marker lives: longer than any run, so only a crash leaves one.
MARKER_TTL_MS = 24 * 3600 * 1000


class Partition:
    """One partition of the queue (all of it, unpartitioned): its keys and FINISH script."""

    def __init__(self, keys: QueueKeys, results_kept: int, errors_kept_s: int) -> None:
        self.keys = keys
        self.finish = finish_script(keys, results_kept=results_kept, errors_kept_s=errors_kept_s)
        self.end: EndWriter | None = None  # once connected


class QueueWorker:
    """One queue's claim -> run -> finish loop over its partitions; built by
    queue_worker.build_worker.

    A partitioned queue's claims go round its partitions, starting one further each time, so
    each is served alike; idle, the worker blocks on one partition's wake list at a time, so
    a job enqueued into another waits at most a poll tick.
    """

    def __init__(
        self,
        *,
        keys: Keys,
        queue: QueueName,
        execution: JobExecution,
        redis_settings: RedisSettings,
        decoder: Callable[[bytes], dict[str, Any]],
        worker_id: str,
        max_jobs: int,
        poll_delay_s: float,
        read_limit: int,
        lease_s: float,
        keep_result_s: float,
        results_kept: int,
        errors_kept_s: int,
        health_key: str,
        health_interval_s: float,
        ctx: dict[str, Any],
        hooks: dict[str, Hook],
        burst: bool = False,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.all_keys = keys
        self.queue = queue
        self.keys = keys.of(queue)  # the first partition's: the queue's pause flag is there
        self.execution = execution
        self.redis_settings = redis_settings
        self.decoder = decoder
        self.worker_id = worker_id
        self.max_jobs = max_jobs
        self.poll_delay_s = poll_delay_s
        self.read_limit = read_limit
        self.lease_s = lease_s
        self.keep_result_s = keep_result_s
        self.health_key = health_key
        self.health_interval_s = health_interval_s
        self.ctx = ctx
        self.hooks = hooks
        self.burst = burst
        # The queue's limit, one bucket for all its partitions and workers (see `_granted`).
        self.rate_limit = rate_limit
        self._unused_starts = 0  # granted by the last take, not claimed: given back next time
        self._throttled_until = 0.0  # monotonic: no start is allowed before then
        self._limit_name = f"queue:{queue.value}"  # its label in postroom_rate_limit_waits
        self._results_kept, self._errors_kept_s = results_kept, errors_kept_s
        self.parts = [Partition(k, results_kept, errors_kept_s) for k in keys.partitions_of(queue)]
        self._next_part = 0  # where the next claim starts
        self._pool: ArqRedis | None = None
        # Each claimed run (from claim to its end written) by lease token: a job can be
        # claimed again here while its lapsed run still waits to write its end. Each run's
        # ctx by job id (the newest run's).
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.running_ctx: dict[str, dict[str, Any]] = {}
        # The runs whose function is running: the only part of a run a cancel may stop.
        self.function_tasks: dict[str, asyncio.Task[None]] = {}
        # The newest claim of each job running here (its lease token, its partition); the
        # next token's number.
        self.claims: dict[str, Claim] = {}
        self._serial = 0
        self.main_task: asyncio.Task[None] | None = None
        self._in_flight = 0  # claimed runs not yet ended: the slots taken
        self._allow_pick = False
        # Set when a slot frees or picking is allowed again: ends a wait (see `_wait`).
        self._wake = asyncio.Event()
        # Whether the last claim left ready jobs unread for want of free slots.
        self._more_ready = False
        # Whether the claim queued behind the last idle wait took every ready job.
        self._claimed_all_ready = False
        # The pool, and the connection of it that the idle waits use (`_idle_connection`).
        self._held: tuple[ArqRedis, AbstractConnection] | None = None
        # When this worker last (re)connected: for a moment after, it leaves lapsed runs to
        # their workers (see `_claim_and_start`).
        self._connected_at = 0.0
        self._last_health = 0.0
        self.counts = {
            "completed": 0,
            "retried": 0,
            "dead_lettered": 0,
            "cancelled": 0,
            "deferred": 0,
        }

    @property
    def connected(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> ArqRedis:
        assert self._pool is not None, "the worker is not connected"
        return self._pool

    @property
    def allow_pick_jobs(self) -> bool:
        return self._allow_pick

    @allow_pick_jobs.setter
    def allow_pick_jobs(self, allow: bool) -> None:
        """The supervisor sets this from the queue's pause flag; a resume ends the wait."""
        if allow and not self._allow_pick:
            self._wake.set()
        self._allow_pick = allow

    async def async_run(self) -> None:
        """Run the loop until cancelled (or, in burst mode, until the queue is empty)."""
        self.main_task = asyncio.current_task()
        await self.main()

    def redis_lost(self) -> None:
        """Redis failed this worker's maintenance (Supervisor._maintain): the moment after
        it answers again counts as a reconnect, in which lapsed runs are left to their
        workers. The poll loop may not have seen the outage at all: with every slot held by
        a run waiting to write its end, it makes no call of its own, and would otherwise
        retake those very runs, its own, as soon as Redis is back."""
        self._connected_at = time.monotonic()

    async def main(self) -> None:
        if self._pool is None:
            self._pool = await open_pool(self.ctx["settings"], self.redis_settings)
            self.ctx["redis"] = self._pool
            if "on_startup" in self.hooks:
                await self.hooks["on_startup"](self.ctx)
        await self._serve_partitions_used()
        for script in (CLAIM, RENEW, RATE_LIMIT, *(part.finish for part in self.parts)):
            await script.load(self.pool)  # again only after a NOSCRIPT
        self._connected_at = time.monotonic()
        for part in self.parts:
            batcher = ScriptBatcher(self.pool, part.finish, (part.keys.queue,))
            part.end = EndWriter(
                part.keys, batcher, self.keep_result_s, self.execution.runtime.sealer
            )
        logger.info("queue %s: worker started", self.queue)
        while True:
            await self._poll_iteration()
            if self.burst and await self._burst_done():
                return
            await self._wait()

    async def close(self) -> None:
        """After the runs ended: drop the health key, run the shutdown hooks, close the pool."""
        if self._pool is None:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.pool.delete(self.health_key)
        if "on_shutdown" in self.hooks:
            await self.hooks["on_shutdown"](self.ctx)
        await close_pool(self.pool)
        self._pool = None

    async def _idle_connection(self) -> AbstractConnection:
        """The connection the idle waits use, taken from the pool once (the pool's checkout
        polls the socket each time) and kept; a new pool (a reconnect) gets a new one. It
        closes with the pool, which closes the connections it lent too."""
        held = self._held
        if held is None or held[0] is not self.pool:
            held = self._held = (self.pool, await self.pool.connection_pool.get_connection())
        return held[1]

    async def _serve_partitions_used(self) -> None:
        """Record this worker's partition count as the queue's most ever, and serve as many
        as it ever had: a lowered count leaves jobs in the partitions it no longer fills."""
        used = int(
            await PARTITIONS_USED(self.pool, (self.keys.partitions_used,), (len(self.parts),))
        )
        for n in range(len(self.parts), used):
            keys = self.all_keys.of(self.queue, n)
            self.parts.append(Partition(keys, self._results_kept, self._errors_kept_s))

    async def _burst_done(self) -> bool:
        for part in self.parts:
            if await self.pool.zcard(part.keys.queue):
                return False
        await asyncio.gather(*self.tasks.values())
        return True

    async def _wait(self) -> None:
        """Until there may be a job to claim, and never longer than a poll tick.

        Paused, that is a resume. With ready jobs left unread, when a quarter of the slots are
        free (claiming for one slot at a time would cost a claim per job); with no free slot,
        when one frees; otherwise when an enqueue leaves a wake token (BLPOP holds a pooled
        connection meanwhile).
        """
        tick = self.poll_delay_s
        throttled_for = self._throttled_until - time.monotonic()
        if throttled_for > 0 and self.allow_pick_jobs and self._in_flight < self.max_jobs:
            # Until the rate limit allows the next start, a tick at most: a start another
            # worker took but did not use comes back with its next take, within a tick.
            await asyncio.sleep(min(throttled_for, tick) if tick > 0 else throttled_for)
            return
        if tick <= 0:
            return
        if not self.allow_pick_jobs:
            await sleep_unless(self._wake, tick)  # a resume sets it
        elif self._more_ready or self._in_flight >= self.max_jobs:
            wanted = max(1, self.max_jobs // 4) if self._more_ready else 1
            deadline = time.monotonic() + tick
            while self.max_jobs - self._in_flight < wanted and time.monotonic() < deadline:
                self._wake.clear()
                await sleep_unless(self._wake, deadline - time.monotonic())
        elif on_cluster(self.pool) or self.rate_limit is not None:
            # A Cluster's pipelines refuse EVALSHA (redis-py 5); a rate-limited claim takes
            # its starts from the bucket first (`_granted`): the claim waits for the wake.
            wake = self.parts[self._next_part].keys.wake
            await self.pool.execute_command("BLPOP", wake, tick)  # type: ignore[no-untyped-call]
        else:
            await self._idle_wait(tick)

    async def _idle_wait(self, tick: float) -> None:
        """Block on the wake list with the next claim queued behind it, in one round trip.

        Redis runs the commands a blocked client sent after BLPOP the moment BLPOP returns
        (a wake token, or the tick), so the claim runs as the enqueue lands and a new job
        starts one hop after it instead of two. The claim's time and free slots are those
        of the wait's start: slots only free meanwhile, and a job that fell due during the
        wait is promoted at the next claim. A cancel (the stop) waits for the round trip,
        at most a tick, so what the claim took is never left behind: its runs start, or
        are put back while the queue stops or pauses (see `_put_back`)."""
        inner = asyncio.ensure_future(self._blpop_and_claim(tick))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            await asyncio.gather(inner, return_exceptions=True)
            raise

    async def _blpop_and_claim(self, tick: float) -> None:
        part = self._next_part
        keys = self.parts[part].keys
        count = min(self.max_jobs - self._in_flight, self.read_limit)
        args = self._claim_args(keys, count, self._retake())
        connection = await self._idle_connection()
        await connection.send_packed_command(
            pack(["BLPOP", keys.wake, f"{tick:.3f}"])
            + pack(["EVALSHA", CLAIM.sha, 3, keys.queue, keys.active, keys.results, *args])
        )
        replies: list[Any] = []
        for _ in range(2):  # both read, whatever they are: the connection stays in step
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
        claimed = replies[1]
        if isinstance(claimed, NoScriptError):
            await CLAIM.load(self.pool)  # the next turn's claim runs it
            return
        if isinstance(claimed, Exception):
            raise claimed
        found = self._start_claimed(part, claimed)
        self._next_part = (part + 1) % len(self.parts)
        # Fewer than asked for: nothing else is ready, the next turn need not claim again.
        self._claimed_all_ready = found < count

    async def _poll_iteration(self) -> None:
        free = self.max_jobs - self._in_flight
        self._more_ready = False
        self._wake.clear()  # before the claim: a slot freed after it ends the wait
        claimed_all_ready, self._claimed_all_ready = self._claimed_all_ready, False
        if self.allow_pick_jobs and free > 0 and not claimed_all_ready:
            await self._claim_and_start(min(free, self.read_limit))
        for token, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[token]
                _check_ended(token, task)
        await self._record_health()

    async def _claim_and_start(self, count: int) -> None:
        """Claim and start up to `count` jobs, going round the partitions.

        For one lease after (re)connecting, a job whose lease lapsed but whose run never
        ended is not retaken: after a Redis restart every lease has lapsed at once, and the
        live workers renew theirs as they reconnect (Supervisor._maintain); a dead worker's
        job waits that much longer.
        """
        retake = self._retake()
        if self.rate_limit is not None:
            granted = count = await self._granted(count)
            if count == 0:
                return
        parts = len(self.parts)
        start, self._next_part = self._next_part, (self._next_part + 1) % parts
        for i in range(parts):
            part = (start + i) % parts
            count -= await self._claim(part, count, retake)
            if count <= 0:
                self._more_ready = self._throttled_until <= time.monotonic()
                return
        if self.rate_limit is not None:
            # Fewer jobs were ready than granted: the limit is not what holds this worker
            # back, so it waits as an idle one does (on the wake list), not for the next
            # start; the unused starts go back with its next take.
            self._unused_starts = min(count, granted)
            self._throttled_until = 0.0

    async def _granted(self, want: int) -> int:
        """How many of `want` jobs the queue's rate limit lets start now, cluster-wide.

        One call of the bucket's script per claim batch, before the claim, on the bucket's
        own key (the first partition's tag): one bucket holds for every partition, each in
        a slot of its own. Starts granted but not claimed (fewer jobs were ready) are given
        back in the next call; a grant short of `want` names when the next start is
        allowed, and the worker waits until then (`_wait`). Jobs over the limit stay in
        their queue untouched: they wait, spending no try, and start as soon as allowed.
        """
        assert self.rate_limit is not None
        refund, self._unused_starts = self._unused_starts, 0
        grant = await take(self.pool, self.keys.rate_bucket, self.rate_limit, want, refund)
        if grant.granted < want:
            waits = self.execution.runtime.metrics.rate_waits
            waits[self._limit_name] = waits.get(self._limit_name, 0) + 1
            self._throttled_until = time.monotonic() + grant.wait_s
        return grant.granted

    def _retake(self) -> int:
        return int(time.monotonic() - self._connected_at > self.lease_s)

    async def _claim(self, partition: int, count: int, retake: int) -> int:
        keys = self.parts[partition].keys
        args = self._claim_args(keys, count, retake)
        claimed = await CLAIM(self.pool, (keys.queue, keys.active, keys.results), args)
        return self._start_claimed(partition, claimed)

    def _claim_args(self, keys: QueueKeys, count: int, retake: int) -> list[str | int]:
        now = timestamp_ms()
        return [
            now,
            count,
            self.read_limit,
            int(self.lease_s * 1000),
            keys.job(""),
            keys.tries(""),
            keys.running(""),
            keys.recoveries(""),
            self.worker_id,
            self._serial,
            MARKER_TTL_MS,
            RETRY_TTL_S,
            now - int(self.keep_result_s * 1000),
            retake,
        ]

    def _start_claimed(self, partition: int, claimed: list[Any]) -> int:
        """Start a run per claimed job (or put it back: the queue stopped or paused while
        the claim was on the wire); returns how many."""
        found = len(claimed) // CLAIMED_FIELDS
        picking = self.allow_pick_jobs
        self._serial += found
        for i in range(0, len(claimed), CLAIMED_FIELDS):
            raw_id, raw_score, payload, job_try, lost_by, token, recoveries = claimed[
                i : i + CLAIMED_FIELDS
            ]
            claim = Claim(
                raw_id.decode(),
                int(float(raw_score)),
                payload,
                int(job_try),
                None if lost_by is None else lost_by.decode(),
                token.decode(),
                int(recoveries),
                partition,
            )
            self._in_flight += 1
            self.claims[claim.job_id] = claim
            # Decoded here, the batch's records one after the other rather than each amid
            # its own run: the decoding (and a sealed payload's AES-GCM opening) stays warm
            # in the CPU, which halves what sealing adds to a no-op job's CPU time.
            if picking:
                job = self._run_claimed(claim, self._decode(claim))
            else:
                job = self._put_back(claim)
            task = asyncio.create_task(job)
            task.add_done_callback(functools.partial(self._ended, claim.job_id, claim.token))
            self.tasks[claim.token] = task
        return found

    def _ended(self, job_id: str, token: str, _: object) -> None:
        claim = self.claims.get(job_id)
        if claim is not None and claim.token == token:  # not claimed again by a newer run
            del self.claims[job_id]
        self._in_flight -= 1
        self._wake.set()

    async def _put_back(self, claim: Claim) -> None:
        """A job claimed as its queue stopped taking jobs: back in the queue, its try
        refunded, as a run put back by a shutdown."""
        end = self.parts[claim.partition].end
        assert end is not None, "a claim before main()"
        await end.write(claim, end.call(claim, None, PUT_BACK, timestamp_ms()))

    def _decode(self, claim: Claim) -> Run | RunOutcome | None:
        """The claimed job's run (None: its record expired), or the outcome of a record the
        decoder failed on."""
        try:
            return decode(claim, self.decoder, self.execution.runtime.sealer, self.queue)
        except Exception as exc:  # the decoder turns every bad record into a run: a bug
            logger.exception("job %s: its record could not be decoded", claim.job_id)
            return self._cannot_run(claim, "malformed", exc)

    async def _run_claimed(self, claim: Claim, decoded: Run | RunOutcome | None) -> None:
        start_ms = timestamp_ms()
        run: Run | None = None
        if isinstance(decoded, RunOutcome):
            outcome = decoded
        else:
            run = decoded
            if run is None:
                logger.warning("job %s expired before it ran", claim.job_id)
                gone = LookupError("job expired: its record was gone when it was claimed")
                outcome = self._cannot_run(claim, "expired", gone)
            else:
                if run.job_try > claim.job_try:  # started at a later try: count from there
                    tries = self.parts[claim.partition].keys.tries(claim.job_id)
                    await self.pool.setex(tries, RETRY_TTL_S, run.job_try)
                outcome = await self._execute(claim, run)
        self._count(outcome)
        if outcome.kind == "lost":
            return  # the job is another worker's now: nothing of this run is written
        end = self.parts[claim.partition].end
        assert end is not None, "a run ended before main()"
        await end.write(claim, end.call(claim, run, outcome, start_ms))

    async def _execute(self, claim: Claim, run: Run) -> RunOutcome:
        job_id = claim.job_id
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": run.job_try,
            "enqueue_time": ms_to_datetime(run.enqueue_ms),
            "score": claim.score,
            LEASE_TOKEN: claim.token,
            LOST_BY: claim.lost_by,
            RECOVERIES: claim.recoveries,
        }
        self.running_ctx[job_id] = ctx
        try:
            if "on_job_start" in self.hooks:
                await self.hooks["on_job_start"](ctx)
            task = asyncio.current_task()
            assert task is not None
            # Listed only while the task runs: a cancel (a user's, a lost lease's, a
            # shutdown's) stops the task's function, never the writing of its end.
            self.function_tasks[job_id] = task
            try:
                keys = self.parts[claim.partition].keys
                tracing = self.execution.runtime.tracing
                if tracing is None:
                    outcome = await self.execution.run(ctx, keys, run.name, run.kwargs, run.stored)
                else:  # the try as a span, child of its enqueue's
                    job = self.execution.run(ctx, keys, run.name, run.kwargs, run.stored)
                    outcome = await tracing.run(job, self.queue, ctx, keys, run.name, run.trace)
            finally:
                del self.function_tasks[job_id]
                if task.cancelling():
                    task.uncancel()  # the cancel was answered by the outcome
            if "on_job_end" in self.hooks:
                await self.hooks["on_job_end"](ctx)
            return outcome
        finally:
            if self.running_ctx.get(job_id) is ctx:
                del self.running_ctx[job_id]

    def _cannot_run(self, claim: Claim, reason: Reason, exc: BaseException) -> RunOutcome:
        return dead_lettered(
            job_id=claim.job_id,
            queue=self.queue,
            task=None,
            payload=None,
            reason=reason,
            job_try=claim.job_try,
            enqueued_at=None,
            score=claim.score,
            exc=exc,
        )

    def _count(self, outcome: RunOutcome) -> None:
        if outcome.kind in self.counts:
            self.counts[outcome.kind] += 1

    def stop_run(self, job_id: str, *, lost: bool = False) -> bool:
        """Stop a run's task (a user's cancel; with `lost`, the job went to another worker);
        False when no function of that job runs here (its end may be being written)."""
        task = self.function_tasks.get(job_id)
        if task is None:
            return False
        if lost:
            self.running_ctx[job_id][LEASE_LOST] = True
        task.cancel()
        return True

    async def renew_leases(self, lease_ms: int) -> list[str]:
        """Renew the leases of the jobs running here; returns those lost to another worker
        (or ended without this run) while this worker could not reach Redis."""
        by_partition: dict[int, list[str | int]] = {}
        for job_id, claim in self.claims.items():
            by_partition.setdefault(claim.partition, []).extend((claim.token, job_id))
        lost: list[str] = []
        for partition, runs in by_partition.items():
            keys = self.parts[partition].keys
            args: list[str | int] = [lease_ms, keys.running(""), keys.recoveries(""), *runs]
            lost += [job_id.decode() for job_id in await RENEW(self.pool, (keys.active,), args)]
        return lost

    async def _record_health(self) -> None:
        """Refresh this worker's health key (worker_health.py), at most every interval."""
        now = time.monotonic()
        if now - self._last_health < self.health_interval_s:
            return
        self._last_health = now
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        info = f"{datetime.now():%b-%d %H:%M:%S} {counts} running={self._in_flight}"
        await self.pool.psetex(self.health_key, int((self.health_interval_s + 1) * 1000), info)


def _check_ended(token: str, task: asyncio.Task[None]) -> None:
    """Log a run that raised past its own handling (a non-transient Redis error writing its
    end, say). The job is safe: its end unwritten, its lease lapses and it runs again."""
    if task.cancelled() or (exc := task.exception()) is None:
        return
    logger.error(
        "run %s: it raised outside the task (%s: %s); if its end was not written, the job "
        "runs again once its lease lapses",
        token,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
