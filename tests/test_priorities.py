"""Priorities: a ready job of a higher priority starts first; time still comes before priority."""

from __future__ import annotations

import random
import time
from typing import Any

from config.queues import BackoffPolicy, QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient
from workers.context import JobContext
from workers.registry import TaskRegistry
from workers.store.keys import Keys
from workers.store.priority import Priority, is_waiting, priority_of

RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


def _recording_tasks() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task(queue=QueueName.DELIVERY, name="tests.record_start")
    async def record_start(ctx: JobContext, log: str, label: str) -> None:
        await ctx["redis"].rpush(log, f"{label}@{time.time()}")

    @tasks.task(
        queue=QueueName.DELIVERY,
        name="tests.fail_first_try",
        max_tries=2,
        backoff=BackoffPolicy(kind="fixed", base=3600, cap=3600, jitter=False),
    )
    async def fail_first_try(ctx: JobContext, log: str, label: str) -> None:
        await ctx["redis"].rpush(log, label)
        raise RuntimeError("first try fails")

    @tasks.task(queue=QueueName.DELIVERY, name="tests.record_priority")
    async def record_priority(ctx: JobContext, log: str, label: str) -> None:
        await ctx["redis"].rpush(log, f"{label}={ctx['priority'].name}")

    return tasks


def _one_at_a_time(settings: PostroomSettings) -> PostroomSettings:
    queues = {"message_delivery": {"concurrency": 1}}
    return settings.model_copy(update={"queues": settings.queues.model_validate(queues)})


async def _started(client: PostroomClient, log: str) -> list[tuple[str, float]]:
    entries = [e.decode().split("@") for e in await client.redis.lrange(log, 0, -1)]
    return [(label, float(at)) for label, at in entries]


async def test_a_queue_filled_with_mixed_priorities_runs_them_in_priority_order(
    settings: PostroomSettings,
) -> None:
    settings = _one_at_a_time(settings)
    tasks = _recording_tasks()
    record = tasks.get("tests.record_start")
    log = f"{settings.key_prefix}:started"
    rng = random.Random(7)
    jobs = [(f"job{i}", rng.choice(list(Priority))) for i in range(60)]
    async with await PostroomClient.connect(settings, tasks) as client:
        for label, priority in jobs:  # one by one, so each has its own enqueue time
            await client.enqueue(record.request({"log": log, "label": label}), priority=priority)
        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):

            async def all_ran() -> bool:
                return int(await client.redis.llen(log)) == len(jobs)

            await eventually(all_ran, "every job ran")
        order = [label for label, _ in await _started(client, log)]
    priority_of_label = dict(jobs)
    ranks = [RANK[priority_of_label[label]] for label in order]
    assert sorted(order) == sorted(priority_of_label)
    # Every urgent job before any high one, and so on (jobs enqueued in the same millisecond
    # may swap places within their priority).
    assert ranks == sorted(ranks)


async def test_an_urgent_delayed_job_still_waits_for_its_time(settings: PostroomSettings) -> None:
    settings = _one_at_a_time(settings)
    tasks = _recording_tasks()
    record = tasks.get("tests.record_start")
    log = f"{settings.key_prefix}:started"
    async with await PostroomClient.connect(settings, tasks) as client:
        enqueued_at = time.time()
        await client.enqueue(
            record.request({"log": log, "label": "urgent-later"}),
            priority=Priority.URGENT,
            delay=1.5,
        )
        await client.enqueue(
            record.request({"log": log, "label": "low-now"}), priority=Priority.LOW
        )
        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):

            async def both_ran() -> bool:
                return int(await client.redis.llen(log)) == 2

            await eventually(both_ran, "both jobs ran")
        started = await _started(client, log)
    assert [label for label, _ in started] == ["low-now", "urgent-later"]
    assert started[1][1] >= enqueued_at + 1.5


async def test_a_retried_job_waits_its_backoff_and_keeps_its_priority(
    settings: PostroomSettings,
) -> None:
    tasks = _recording_tasks()
    flaky = tasks.get("tests.fail_first_try")
    log = f"{settings.key_prefix}:tries"
    queue = Keys(settings.key_prefix).of(QueueName.DELIVERY).queue
    async with await PostroomClient.connect(settings, tasks) as client:
        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):
            job = await client.enqueue(
                flaky.request({"log": log, "label": "x"}), priority=Priority.HIGH
            )

            async def rescheduled() -> bool:
                score = await client.redis.zscore(queue, job.job_id)
                return score is not None and is_waiting(score)

            failed_at = time.time()
            await eventually(rescheduled, "the failed try was rescheduled")
        score: Any = await client.redis.zscore(queue, job.job_id)
        assert await client.redis.llen(log) == 1
    assert priority_of(score) == Priority.HIGH
    # The fixed one-hour backoff, counted from the failure (no jitter in this policy).
    assert failed_at * 1000 + 3_600_000 - 5_000 <= score <= time.time() * 1000 + 3_600_000


async def test_a_task_reads_its_jobs_priority_from_its_context(settings: PostroomSettings) -> None:
    tasks = _recording_tasks()
    record = tasks.get("tests.record_priority")
    log = f"{settings.key_prefix}:priorities"
    jobs = {f"{p.name}-{delayed}": (p, delayed) for p in Priority for delayed in (False, True)}
    async with await PostroomClient.connect(settings, tasks) as client:
        for label, (priority, delayed) in jobs.items():  # a delayed one waits, then is promoted
            request = record.request({"log": log, "label": label})
            await client.enqueue(request, priority=priority, delay=0.2 if delayed else None)
        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):

            async def all_ran() -> bool:
                return int(await client.redis.llen(log)) == len(jobs)

            await eventually(all_ran, "every job ran")
        seen = dict(entry.decode().split("=") for entry in await client.redis.lrange(log, 0, -1))
    assert seen == {label: priority.name for label, (priority, _) in jobs.items()}
