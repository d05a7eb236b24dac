"""arq's Worker, claiming jobs by priority and only as many as it can start now.

arq reads up to `queue_read_limit` ids at once and then waits, holding that list, for slots to
free: a job enqueued meanwhile waits behind all of them whatever its priority; and it claims
each job with its own WATCH/MULTI round trips. This Worker claims, in one script call, no more
jobs than it has free slots (in priority order, see priority.py), and claims again as soon as
a slot frees while more work was ready, instead of at the next poll tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.constants import retry_key_prefix as retry_prefix
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript

from config.queues import QueueName
from workers.execution import Outcome
from workers.keys import Keys
from workers.priority import CLAIM_READY, RESCHEDULE

logger = logging.getLogger("arq.worker")

# The counters each outcome moves (see QueueStats): `failed` counts every failed try.
COUNTERS: dict[Outcome | None, tuple[str, ...]] = {
    "completed": ("completed",),
    "retried": ("retried", "failed"),
    "dead_lettered": ("dead_lettered", "failed"),
    "cancelled": ("cancelled",),
    None: ("failed",),  # arq itself failed the job (it outlived arq's own timeout, say)
}

# KEYS[1] a queue's result index; ARGV: job id, now ms, how many to keep, the oldest finish
# time kept (ms), arq's result key prefix. Indexes a new result and deletes those past either
# bound, so results are kept for `keep_result` or the last N, whichever is fewer.
KEEP_RESULT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if extra > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, extra - 1)) do
        redis.call('DEL', ARGV[5] .. id)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
end
"""


class QueueWorker(Worker):
    """One queue's arq Worker with priority-ordered reads; built by queue_worker.build_worker."""

    def __init__(
        self,
        *args: Any,
        queue: QueueName,
        keys: Keys,
        outcomes: dict[str, Outcome],
        results_per_queue: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.queue = queue
        self.keys = keys
        self.outcomes = outcomes
        self.results_per_queue = results_per_queue
        self._slot_freed = asyncio.Event()
        self._read_full = False
        self._claim: AsyncScript | None = None
        self._reschedule: AsyncScript | None = None
        self._keep_result: AsyncScript | None = None

    async def main(self) -> None:
        """arq's main(), with a wait that ends early when a slot frees (see `_wait`)."""
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        self._claim = self.pool.register_script(CLAIM_READY)
        self._reschedule = self.pool.register_script(RESCHEDULE)
        self._keep_result = self.pool.register_script(KEEP_RESULT)
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
        """Sleep a poll tick, or less when a slot frees while ready jobs were left unread."""
        self._slot_freed.clear()
        if self._read_full and self.job_counter < self.max_jobs:
            return
        timeout = self.poll_delay_s
        if not self._read_full:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._slot_freed.wait()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def _poll_iteration(self) -> None:
        free = self.max_jobs - self.job_counter
        self._read_full = False
        if self.allow_pick_jobs and free > 0:
            count = min(free, self.queue_read_limit)
            if self.burst and self.max_burst_jobs >= 0:
                count = min(count, self.max_burst_jobs - self._jobs_started())
            if count > 0:
                await self._claim_and_start(count)
        for job_id, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[job_id]
                t.result()  # re-raises what run_job raised, as arq does
        await self.heart_beat()

    async def _claim_and_start(self, count: int) -> None:
        assert self._claim is not None
        lease_ms = int(self.in_progress_timeout_s * 1000)
        args: list[str | int] = [
            timestamp_ms(),
            count,
            in_progress_key_prefix,
            lease_ms,
            self.queue_read_limit,
        ]
        claimed = await self._claim(keys=[self.queue_name], args=args)
        self._read_full = len(claimed) == 2 * count
        for raw_id, raw_score in zip(claimed[::2], claimed[1::2], strict=True):
            await self.sem.acquire()  # never waits: no more jobs were claimed than free slots
            self.job_counter += 1
            job_id = raw_id.decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(raw_score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

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
        """arq's finish_job, plus postroom's bookkeeping in the same transaction.

        A retry waits out of its band and keeps its priority; the result joins the queue's
        result index; the counters move; the job leaves the active set.
        """
        outcome = self.outcomes.pop(job_id, None)
        async with self.pool.pipeline(transaction=True) as tr:
            delete_keys = [self.keys.running(job_id)]
            tr.zrem(self.keys.active(self.queue), job_id)
            if finish or outcome is not None:
                for counter in COUNTERS[outcome]:
                    tr.hincrby(self.keys.stats(self.queue), counter, 1)
            in_progress_key = in_progress_key_prefix + job_id
            if keep_in_progress is None:
                delete_keys.append(in_progress_key)
            else:
                tr.pexpire(in_progress_key, to_ms(keep_in_progress))
            if finish:
                if result_data:
                    expire = None if keep_result_forever else result_timeout_s
                    tr.set(result_key_prefix + job_id, result_data, px=to_ms(expire))
                    await self._index_result(tr, job_id, result_timeout_s)
                delete_keys += [retry_prefix + job_id, job_key_prefix + job_id]
                tr.zrem(self.queue_name, job_id)
            elif incr_score:
                assert self._reschedule is not None
                await self._reschedule(keys=[self.queue_name], args=[job_id, incr_score], client=tr)
            tr.delete(*delete_keys)
            await tr.execute()

    async def _index_result(self, tr: Any, job_id: str, keep_s: float | None) -> None:
        assert self._keep_result is not None
        now = timestamp_ms()
        oldest = now - int((keep_s or 0) * 1000) if keep_s else 0
        args: list[str | int] = [job_id, now, self.results_per_queue, oldest, result_key_prefix]
        await self._keep_result(keys=[self.keys.results(self.queue)], args=args, client=tr)
