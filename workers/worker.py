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
import functools
import logging
from typing import Any

from arq.connections import create_pool, log_redis_info
from arq.utils import timestamp_ms, to_ms

from config.queues import QueueName
from workers.claimed_run import Claim, ClaimedRunWorker
from workers.execution import MARKER_TTL_MS, Outcome, RunOutcome
from workers.keys import QueueKeys
from workers.scripts import ScriptBatcher
from workers.serialization import dumps
from workers.waiting import sleep_unless
from workers.worker_scripts import CLAIM, CLAIMED_FIELDS, RENEW, RETRY_TTL_S, finish_script

# arq's logger, as arq's Worker has it.
logger = logging.getLogger("arq.worker")

# The counters each outcome moves (see QueueStats), space separated as finish_script takes
# them: `failed` counts every failed try.
COUNTERS: dict[Outcome | None, str] = {
    "completed": "completed",
    "retried": "retried failed",
    "dead_lettered": "dead_lettered failed",
    "cancelled": "cancelled",
    None: "failed",  # arq's rules failed the job (it outlived arq's own timeout, say)
}


class QueueWorker(ClaimedRunWorker):
    """One queue's arq Worker with priority-ordered reads; built by queue_worker.build_worker."""

    _allow_pick = False

    def __init__(
        self,
        *args: Any,
        queue: QueueName,
        keys: QueueKeys,
        outcomes: dict[str, RunOutcome],
        results_per_queue: int,
        errors_kept_s: int,
        worker_id: str,
        **kwargs: Any,
    ) -> None:
        # Set when a slot frees or picking is allowed again: ends a wait (see `_wait`).
        self._wake = asyncio.Event()
        super().__init__(*args, **kwargs)
        self.queue = queue
        self.keys = keys
        self.outcomes = outcomes
        self.worker_id = worker_id
        # Whether the last claim left ready jobs unread for want of free slots.
        self._more_ready = False
        self._finish_script = finish_script(
            self.keys, results_kept=results_per_queue, errors_kept_s=errors_kept_s
        )
        # The next lease token's number, and the token of each job running here.
        self._serial = 0
        self.tokens: dict[str, str] = {}
        self.running_ctx = {}
        # When this worker last (re)connected: for a moment after, it leaves lapsed runs to
        # their workers (see `_claim_and_start`).
        self._connected_at = 0.0

    def redis_lost(self) -> None:
        """Redis failed this worker's maintenance (Supervisor._maintain): the moment after
        it answers again counts as a reconnect, in which lapsed runs are left to their
        workers. The poll loop may not have seen the outage at all: with every slot held by
        a run waiting to write its end, it makes no call of its own, and would otherwise
        retake those very runs, its own, as soon as Redis is back."""
        self._connected_at = self.loop.time()

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
        for script in (CLAIM, RENEW, self._finish_script):  # again only after a NOSCRIPT
            await script.load(self.pool)
        self._connected_at = self.loop.time()
        self._finish = ScriptBatcher(self.pool, self._finish_script, (self.keys.queue,))
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

        Paused, that is a resume. With ready jobs left unread, when a quarter of the slots are
        free (claiming for one slot at a time would cost a claim per job); with no free slot,
        when one frees; otherwise when an enqueue leaves a wake token (BLPOP holds a pooled
        connection meanwhile).
        """
        tick = self.poll_delay_s
        if tick <= 0:
            return
        if not self.allow_pick_jobs:
            await sleep_unless(self._wake, tick)  # a resume sets it
        elif self._more_ready or self.job_counter >= self.max_jobs:
            wanted = max(1, self.max_jobs // 4) if self._more_ready else 1
            deadline = self.loop.time() + tick
            while self.max_jobs - self.job_counter < wanted and self.loop.time() < deadline:
                self._wake.clear()
                await sleep_unless(self._wake, deadline - self.loop.time())
        else:
            # redis-py types blpop's timeout as whole seconds; Redis takes a decimal.
            await self.pool.execute_command("BLPOP", self.keys.wake, tick)  # type: ignore[no-untyped-call]

    @property
    def allow_pick_jobs(self) -> bool:
        return self._allow_pick

    @allow_pick_jobs.setter
    def allow_pick_jobs(self, allow: bool) -> None:
        """The supervisor sets this from the queue's pause flag; a resume ends the wait."""
        if allow and not self._allow_pick:
            self._wake.set()
        self._allow_pick = allow

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._wake.set()

    async def _poll_iteration(self) -> None:
        free = self.max_jobs - self.job_counter
        self._more_ready = False
        self._wake.clear()  # before the claim: a slot freed after it ends the wait
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
        """Claim and start up to `count` jobs.

        For one lease after (re)connecting, a job whose lease lapsed but whose run never
        ended is not retaken: after a Redis restart every lease has lapsed at once, and the
        live workers renew theirs as they reconnect (Supervisor._maintain); a dead worker's
        job waits that much longer.
        """
        now = timestamp_ms()
        retake = self.loop.time() - self._connected_at > self.in_progress_timeout_s
        args: list[str | int] = [
            now,
            count,
            self.queue_read_limit,
            int(self.in_progress_timeout_s * 1000),
            self.keys.lease(""),
            self.keys.job(""),
            self.keys.tries(""),
            self.keys.running(""),
            self.keys.recoveries(""),
            self.worker_id,
            self._serial,
            MARKER_TTL_MS,
            RETRY_TTL_S,
            0 if self.keep_result_forever else now - to_ms(self.keep_result_s),
            int(retake),
        ]
        keys = [self.keys.queue, self.keys.active, self.keys.results]
        claimed = await CLAIM(self.pool, keys, args)
        found = len(claimed) // CLAIMED_FIELDS
        self._serial += found
        self._more_ready = found == count
        for i in range(0, len(claimed), CLAIMED_FIELDS):
            raw_id, raw_score, payload, job_try, lost_by, token, recoveries = claimed[
                i : i + CLAIMED_FIELDS
            ]
            await self.sem.acquire()  # never waits: no more jobs were claimed than free slots
            self.job_counter += 1
            claim = Claim(
                raw_id.decode(),
                int(float(raw_score)),
                payload,
                int(job_try),
                None if lost_by is None else lost_by.decode(),
                token.decode(),
                int(recoveries),
            )
            self.tokens[claim.job_id] = claim.token
            task = self.loop.create_task(self.run_claimed(claim))
            task.add_done_callback(functools.partial(self._ended, claim.job_id, claim.token))
            self.tasks[claim.job_id] = task

    def _ended(self, job_id: str, token: str, _: object) -> None:
        if self.tokens.get(job_id) == token:  # not yet claimed again by a newer run here
            del self.tokens[job_id]
        self._release_sem_dec_counter_on_complete()

    async def renew_leases(self, lease_ms: int) -> list[str]:
        """Renew the leases of the jobs running here; returns those lost to another worker
        (or ended without this run) while this worker could not reach Redis."""
        if not self.tokens:
            return []
        args: list[str | int] = [
            timestamp_ms(),
            lease_ms,
            self.keys.running(""),
            self.keys.lease(""),
            self.keys.recoveries(""),
        ]
        for job_id, token in self.tokens.items():
            args += (token, job_id)
        lost = await RENEW(self.pool, (self.keys.active,), args)
        return [job_id.decode() for job_id in lost]

    def end_of_run(
        self,
        claim: Claim,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
    ) -> tuple[Any, ...]:
        """What arq's finish_job writes, plus postroom's bookkeeping, as one call of
        finish_script (worker_scripts.FINISH). (arq calls finish_job only from its own
        run_job, which run_claimed replaces; its cron's `keep_in_progress` does not occur.)

        A retry waits out of its band and keeps its priority, and its error is kept; a dead
        letter is stored with every try's error; the result joins the queue's result index;
        the counters move; the job leaves the active set.
        """
        outcome = self.outcomes.pop(claim.job_id, None)
        kind = None if outcome is None else outcome.kind
        counters = COUNTERS[kind] if finish or kind is not None else ""
        keep_ms = to_ms(result_timeout_s) or 0
        if finish:
            what = "dead" if kind == "dead_lettered" else "finish"
        else:
            what = "retry" if kind == "retried" else "release"
        error = b"" if outcome is None or outcome.error is None else dumps(outcome.error)
        return (
            claim.job_id,
            claim.token,
            what,
            result_data or b"",
            "" if keep_result_forever else max(keep_ms, 1),
            incr_score or 0,
            timestamp_ms(),
            counters,
            error,
            letter_head(outcome),
        )


def letter_head(outcome: RunOutcome | None) -> bytes:
    """A dead letter's JSON up to its list of errors, which FINISH completes from the try
    errors it keeps (so a letter is written in the same script as the run's end)."""
    if outcome is None or outcome.letter is None:
        return b""
    return outcome.letter.model_dump_json(exclude={"errors"}).encode()[:-1] + b',"errors":['
