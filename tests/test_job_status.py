"""Anyone with a job id reads its state, progress, tries and result; jobs can be cancelled;
each queue's counters live in Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config.queues import BackoffPolicy, QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from workers.client import JobFailedError, PostroomClient
from workers.context import JobContext
from workers.errors import PermanentError
from workers.registry import Task, TaskRegistry
from workers.store.job_status import JobState

HOUR = BackoffPolicy(kind="fixed", base=3600, cap=3600, jitter=False)


class Tasks:
    def __init__(self) -> None:
        self.registry = TaskRegistry()
        reg = self.registry.task

        @reg(queue=QueueName.DELIVERY, name="tests.stepwise")
        async def stepwise(ctx: JobContext, key: str, steps: int) -> str:
            """Reports each step, then waits for `key:release` before finishing."""
            redis = ctx["redis"]
            for step in range(1, steps + 1):
                await ctx["progress"](current_step=step, total_steps=steps, step=f"step {step}")
            await redis.rpush(f"{key}:started", ctx["job_try"])
            while not await redis.exists(f"{key}:release"):  # noqa: ASYNC110 - flag in Redis
                await asyncio.sleep(0.02)
            return "done"

        @reg(queue=QueueName.DELIVERY, name="tests.flaky", max_tries=2, backoff=HOUR)
        async def flaky(ctx: JobContext) -> None:
            raise RuntimeError("provider down")

        @reg(queue=QueueName.DELIVERY, name="tests.refused")
        async def refused(ctx: JobContext) -> None:
            raise PermanentError("address rejected")

        @reg(queue=QueueName.DELIVERY, name="tests.noop")
        async def noop(ctx: JobContext, n: int) -> int:
            return n

        self.stepwise: Task[Any, str] = stepwise
        self.flaky: Task[Any, None] = flaky
        self.refused: Task[Any, None] = refused
        self.noop: Task[Any, int] = noop


async def test_a_job_s_state_progress_and_result_are_readable_by_id(
    settings: PostroomSettings,
) -> None:
    tasks = Tasks()
    key = f"{settings.key_prefix}:stepwise"
    async with await PostroomClient.connect(settings, tasks.registry) as client:
        job = await client.enqueue(tasks.stepwise.call(key, 4))
        later = await client.enqueue(tasks.noop.call(1), delay=3600)
        assert await job.status() == JobState.QUEUED
        assert await later.status() == JobState.DEFERRED
        async with running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]):

            async def running() -> bool:
                return await job.status() == JobState.RUNNING and bool(
                    await client.redis.llen(f"{key}:started")
                )

            await eventually(running, "the job runs")
            info = await client.job_info(job.job_id)
            assert info is not None and info.progress is not None
            assert (info.progress.current_step, info.progress.total_steps) == (4, 4)
            assert info.progress.percentage == 100.0
            assert (info.task, info.queue, info.tries) == ("tests.stepwise", QueueName.DELIVERY, 1)
            stats = await client.queue_stats(QueueName.DELIVERY)
            assert (stats.active, stats.waiting, stats.delayed) == (1, 0, 1)

            await client.redis.set(f"{key}:release", 1)
            assert await job.result(timeout=30) == "done"
        info = await client.job_info(job.job_id)
        assert info is not None
        assert (info.state, info.result, info.error) == (JobState.COMPLETE, "done", None)
        assert info.progress is not None and info.progress.step == "step 4"
        assert await client.job_info("no-such-job") is None
        stats = await client.queue_stats(QueueName.DELIVERY)
        assert (stats.active, stats.completed, stats.delayed) == (0, 1, 1)


async def test_retrying_and_dead_lettered_jobs_say_so_and_move_the_counters(
    settings: PostroomSettings,
) -> None:
    tasks = Tasks()
    async with await PostroomClient.connect(settings, tasks.registry) as client:
        async with running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]):
            flaky = await client.enqueue(tasks.flaky.call())
            refused = await client.enqueue(tasks.refused.call())

            async def retrying() -> bool:
                return await flaky.status() == JobState.RETRYING

            await eventually(retrying, "the failed try waits for its retry")
            with pytest.raises(JobFailedError, match="address rejected"):
                await refused.result(timeout=30)
        flaky_info = await flaky.info()
        refused_info = await refused.info()
        stats = await client.queue_stats(QueueName.DELIVERY)
    assert flaky_info is not None and flaky_info.tries == 1
    assert refused_info is not None
    assert refused_info.state == JobState.DEAD_LETTERED
    assert refused_info.error == "PermanentError: address rejected"
    assert (stats.retried, stats.dead_lettered, stats.failed, stats.completed) == (1, 1, 2, 0)
    assert (stats.delayed, stats.dead_lettered_now) == (1, 1)


async def test_a_cancelled_waiting_job_never_runs(settings: PostroomSettings) -> None:
    tasks = Tasks()
    async with await PostroomClient.connect(settings, tasks.registry) as client:
        doomed = await client.enqueue(tasks.noop.call(1))
        kept = await client.enqueue(tasks.noop.call(2))
        assert await doomed.cancel() == "cancelled"
        assert await doomed.cancel() == "not-found"
        async with running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]):
            assert await kept.result(timeout=30) == 2
        info = await doomed.info()
        stats = await client.queue_stats(QueueName.DELIVERY)
    assert info is not None and info.state == JobState.CANCELLED
    assert (stats.cancelled, stats.completed, stats.waiting) == (1, 1, 0)


async def test_a_cancelled_running_job_stops_and_is_not_retried(
    settings: PostroomSettings,
) -> None:
    tasks = Tasks()
    key = f"{settings.key_prefix}:cancel-running"
    async with await PostroomClient.connect(settings, tasks.registry) as client:
        async with running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]):
            job = await client.enqueue(tasks.stepwise.call(key, 1))

            async def started() -> bool:
                return bool(await client.redis.llen(f"{key}:started"))

            await eventually(started, "the job started")
            assert await job.cancel() == "stopping"

            async def cancelled() -> bool:
                return await job.status() == JobState.CANCELLED

            await eventually(cancelled, "the worker stopped the job")
            # Another job still runs on the same worker afterwards.
            assert await (await client.enqueue(tasks.noop.call(3))).result(timeout=30) == 3
        queue = await client.redis.zrange(client.keys.of(QueueName.DELIVERY).queue, 0, -1)
        stats = await client.queue_stats(QueueName.DELIVERY)
        assert await client.redis.lrange(f"{key}:started", 0, -1) == [b"1"]
    assert queue == []
    assert (stats.cancelled, stats.retried, stats.failed) == (1, 0, 0)


async def test_only_the_latest_results_of_a_queue_are_kept(settings: PostroomSettings) -> None:
    settings = settings.model_copy(update={"results_per_queue": 3})
    tasks = Tasks()
    async with await PostroomClient.connect(settings, tasks.registry) as client:
        async with running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]):
            jobs = []
            for n in range(6):  # one after another, so "latest" is well defined
                job = await client.enqueue(tasks.noop.call(n))
                assert await job.result(timeout=30) == n
                jobs.append(job)
        kept = [
            bool(await client.redis.exists(client.keys.of(QueueName.DELIVERY).result(j.job_id)))
            for j in jobs
        ]
        index = await client.redis.zcard(client.keys.of(QueueName.DELIVERY).results)
    assert kept == [False, False, False, True, True, True]
    assert index == 3
