"""Cron: tasks declared with a crontab run once per tick across every worker process.

Each process that serves a cron task's queue enqueues its ticks; the tick's job id and a
"once" marker in the enqueue script make the copies collapse into one job. The job then runs
(and retries, and dead-letters) like any other job of its queue; arq's own cron, whose jobs
default to a single try, is not used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis

from workers.registry import Task
from workers.runner.waiting import sleep_unless
from workers.store.enqueue import NewJob, write_jobs
from workers.store.keys import Keys

logger = logging.getLogger(__name__)

# A tick's "once" marker outlives any result retention, so a tick never runs twice.
ONCE_TTL_MS = 2 * 24 * 3600 * 1000


class CronScheduler:
    """Enqueues the ticks of the cron tasks one process serves."""

    def __init__(
        self,
        redis: ArqRedis,
        keys: Keys,
        tasks: Sequence[Task[Any, Any]],
        max_lateness: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.tasks = [t for t in tasks if t.cron is not None]
        self.max_lateness = max_lateness
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Enqueue ticks as they come until `stop`; a tick missed during downtime within
        `max_lateness` still runs once, older ones are skipped."""
        last = self.clock() - self.max_lateness
        while not stop.is_set():
            now = self.clock()
            await self.enqueue_ticks(last, now)
            last = now
            wake = min(t.cron.next_tick(now) for t in self.tasks if t.cron is not None)
            await sleep_unless(stop, max(wake - self.clock(), 0.01))

    async def enqueue_ticks(self, after: float, upto: float) -> int:
        """Enqueue each task's latest tick in (after, upto] unless it is later than
        `max_lateness`; older ticks in the window are coalesced into it, never replayed.
        Returns how many jobs this call wrote (a copy another process wrote does not count)."""
        jobs: list[NewJob] = []
        for task in self.tasks:
            assert task.cron is not None
            ticks = task.cron.ticks(after, upto)
            if not ticks:
                continue
            tick = ticks[-1]
            if len(ticks) > 1 or upto - tick > self.max_lateness:
                logger.warning(
                    "cron %s: %d tick(s) up to %s missed (bound %.0fs); %s",
                    task.name,
                    len(ticks),
                    datetime.fromtimestamp(tick, UTC).isoformat(),
                    self.max_lateness,
                    "skipped" if upto - tick > self.max_lateness else "running the latest once",
                )
            if upto - tick <= self.max_lateness:
                tick_ms = int(tick * 1000)
                job_id = f"cron:{task.name}:{tick_ms}"
                keys = self.keys.route(task.queue, job_id)
                jobs.append(
                    NewJob(
                        job_id=job_id,
                        keys=keys,
                        task=task.name,
                        kwargs=task.encode(task.cron.payload),
                        due_ms=tick_ms,
                        enqueue_ms=int(upto * 1000),
                        once_key=keys.cron_tick(task.name, tick_ms),
                        once_ttl_ms=ONCE_TTL_MS,
                    )
                )
        return sum(await write_jobs(self.redis, jobs))
