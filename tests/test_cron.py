"""Cron ticks run once across processes, and ticks missed during downtime are skipped."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import postroom_worker
from workers.client import PostroomClient
from workers.crontab import Cron
from workers.errors import TaskDefinitionError
from workers.registry import TaskRegistry
from workers.runner.cron import CronScheduler
from workers.store.keys import Keys
from workers.store.priority import Priority, ready_score


def _minutely_registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task(queue=QueueName.CLEANUP, cron=Cron("* * * * *", payload={"days": 7}))
    async def purge(ctx: Any, days: int) -> int:
        return days

    return tasks


async def test_downtime_runs_only_the_latest_tick_within_the_bound_once(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    upto = datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC).timestamp()
    keys = Keys(settings.key_prefix)
    scheduler = CronScheduler(client.redis, keys, list(_minutely_registry()), max_lateness=120)

    # Ten minutes of downtime: the ten missed ticks collapse into the latest, 12:00.
    assert await scheduler.enqueue_ticks(upto - 600, upto) == 1
    # A second process seeing the same window enqueues nothing more.
    assert await scheduler.enqueue_ticks(upto - 600, upto) == 0

    queued = await client.redis.zrange(keys.of(QueueName.CLEANUP).queue, 0, -1, withscores=True)
    noon_ms = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp() * 1000
    # Ready (its tick has passed) in the normal band, in the order of its tick.
    assert [(job_id.decode(), score) for job_id, score in queued] == [
        (f"cron:purge:{int(noon_ms)}", ready_score(Priority.NORMAL, int(noon_ms)))
    ]


async def test_a_tick_missed_by_more_than_the_bound_is_skipped(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    keys = Keys(settings.key_prefix)
    scheduler = CronScheduler(client.redis, keys, list(_minutely_registry()), max_lateness=20)
    upto = datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC).timestamp()
    assert await scheduler.enqueue_ticks(upto - 600, upto) == 0
    assert await client.redis.zcard(keys.of(QueueName.CLEANUP).queue) == 0


def test_cron_schedule_is_evaluated_in_its_time_zone() -> None:
    berlin = Cron("0 2 * * *", timezone="Europe/Berlin")
    start = datetime(2026, 7, 1, 0, 0, tzinfo=UTC).timestamp()
    # 02:00 in Berlin summer time is 00:00 UTC.
    assert berlin.next_tick(start) == datetime(2026, 7, 2, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("schedule", "message"),
    [("61 * * * *", "invalid crontab"), (Cron("0 2 * * *", timezone="Mars/Base"), "time zone")],
)
def test_a_bad_cron_fails_at_declaration_naming_the_task(schedule: Any, message: str) -> None:
    tasks = TaskRegistry()
    with pytest.raises(TaskDefinitionError, match=f"'nightly'.*{message}"):

        @tasks.task(queue=QueueName.CLEANUP, cron=schedule)
        async def nightly(ctx: Any) -> None: ...


async def test_two_worker_processes_run_each_cron_tick_once(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    env = {"POSTROOM_TASK_MODULES": "tests.cron_tasks"}
    workers = [postroom_worker(settings, "--queues", "message-cleanup", **env) for _ in range(2)]
    ticks_key = f"{settings.key_prefix}:ticks"
    try:
        deadline = time.monotonic() + 60
        while await client.redis.llen(ticks_key) < 4:
            assert time.monotonic() < deadline, "cron ticks did not run"
            await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=60) for worker in workers]
    ran = [job_id.decode() for job_id in await client.redis.lrange(ticks_key, 0, -1)]
    assert len(ran) == len(set(ran)), f"a tick ran twice: {ran}"
    assert codes == [0, 0]
