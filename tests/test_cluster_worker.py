"""Workers on a three-primary Redis Cluster (`POSTROOM_REDIS_CLUSTER`): the six queues, whose
keys sit on different primaries, run end to end through real workers."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from config.queues import BackoffPolicy, QueueName
from config.settings import PostroomSettings, load_settings
from tests.admin.conftest import AUTH, TOKEN
from tests.conftest import eventually, postroom_worker, running_worker
from tests.sample_tasks import sleep_until_released
from tests.servers.cluster import LocalCluster
from tests.test_job_semantics import stop
from workers.client import JobFailedError, PostroomClient
from workers.cluster_client import connect_cluster_client
from workers.context import JobContext
from workers.ops.admin import create_admin_app
from workers.registry import TaskRegistry, registry
from workers.store.job_status import JobState
from workers.store.priority import Priority

QUICK = BackoffPolicy(base=0.05, cap=0.05, jitter=False)


@pytest.fixture
def cluster_settings(redis_cluster: LocalCluster, tmp_path: Path) -> PostroomSettings:
    host, port = redis_cluster.startup_nodes[0]
    return load_settings(
        redis_cluster=f"{host}:{port}",
        key_prefix=f"test-{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        shutdown_grace=5,
    )


def cluster_tasks() -> TaskRegistry:
    """A task per queue that fails its first try, and one that always fails."""
    tasks = TaskRegistry()
    for queue in QueueName:

        async def flaky(ctx: JobContext, n: int) -> dict[str, int]:
            if ctx["job_try"] == 1:
                raise RuntimeError("the first try fails")
            return {"n": n, "try": ctx["job_try"]}

        tasks.task(queue=queue, name=f"tests.flaky.{queue.value}", max_tries=3, backoff=QUICK)(
            flaky
        )

    @tasks.task(queue=QueueName.DELIVERY, name="tests.doomed", max_tries=2, backoff=QUICK)
    async def doomed(ctx: JobContext, n: int) -> None:
        raise RuntimeError(f"try {ctx['job_try']} of {n} failed")

    @tasks.task(queue=QueueName.NOTIFICATION, name="tests.held", timeout=600)
    async def held(ctx: JobContext, key: str) -> str:
        await ctx["redis"].rpush(f"{key}:started", ctx["job_id"])
        while not await ctx["redis"].exists(f"{key}:release"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return "released"

    return tasks


async def test_cluster_workers_run_the_six_queues_with_retries_dead_letters_cancel_and_pause(
    cluster_settings: PostroomSettings,
) -> None:
    tasks = cluster_tasks()
    key = uuid.uuid4().hex
    async with (
        await connect_cluster_client(cluster_settings, tasks) as client,
        running_worker(cluster_settings, tasks=tasks) as supervisor,
    ):
        flaky = [
            await client.enqueue(tasks.get(f"tests.flaky.{q.value}").call(n=i))
            for i, q in enumerate(QueueName)
        ]
        results = [await job.result(timeout=30) for job in flaky]
        assert results == [{"n": i, "try": 2} for i in range(len(QueueName))]

        doomed = await client.enqueue(tasks.get("tests.doomed").call(n=7))
        with pytest.raises(JobFailedError):
            await doomed.result(timeout=30)
        letter = await client.dead_letters.get(doomed.job_id)
        assert letter is not None and letter.reason == "max-tries"
        assert [e.message for e in letter.errors] == ["try 1 of 7 failed", "try 2 of 7 failed"]

        held = await client.enqueue(tasks.get("tests.held").call(key=key))
        await eventually(lambda: client.redis.exists(f"{key}:started"), "the held job started")
        assert await held.cancel() == "stopping"
        await eventually(
            lambda: _state_is(held.job_id, client, JobState.CANCELLED), "the cancel took"
        )

        await client.pause(QueueName.INDEXING)
        await eventually(
            lambda: _true(supervisor.paused.get(QueueName.INDEXING) is True), "the pause seen"
        )
        waiting = await client.enqueue(tasks.get("tests.flaky.message-indexing").call(n=99))
        # Another queue's job runs meanwhile: the worker goes on, the paused queue does not.
        other = await client.enqueue(tasks.get("tests.flaky.message-cleanup").call(n=98))
        assert (await other.result(timeout=30))["n"] == 98
        assert await waiting.status() == JobState.QUEUED
        await client.resume(QueueName.INDEXING)
        assert (await waiting.result(timeout=30))["n"] == 99

        stats = {s.queue: s for s in await client.queues_stats()}
        admin = create_admin_app(settings=cluster_settings, token=TOKEN)
        async with (
            admin.router.lifespan_context(admin),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=admin), base_url="http://admin", headers=AUTH
            ) as api,
        ):
            delivery = (await api.get("/queues/message-delivery")).json()
            page = (await api.get("/queues/message-delivery/failed")).json()
            health = await api.get("/health/ready")  # live workers: a SCAN of every primary
    assert (delivery["completed"], delivery["dead_lettered"]) == (1, 1)
    assert [item["job_id"] for item in page["items"]] == [doomed.job_id]
    assert health.status_code == 200, health.text
    assert stats[QueueName.DELIVERY].dead_lettered == 1
    assert stats[QueueName.NOTIFICATION].cancelled == 1
    for queue in QueueName:
        assert stats[queue].completed == {QueueName.INDEXING: 2, QueueName.CLEANUP: 2}.get(
            queue, 1
        ), queue
        assert (stats[queue].waiting, stats[queue].active, stats[queue].delayed) == (0, 0, 0)


async def test_cluster_job_of_a_sigkilled_worker_is_recovered_by_another(
    cluster_settings: PostroomSettings,
) -> None:
    settings = cluster_settings.model_copy(update={"lease_seconds": 2.0})
    key = uuid.uuid4().hex
    doomed = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_LEASE_SECONDS="2")
    try:
        async with await connect_cluster_client(settings, registry) as client:
            job = await client.enqueue(sleep_until_released.call(key))
            await eventually(lambda: client.redis.exists(f"{key}:started"), "the job started")
            os.kill(doomed.pid, signal.SIGKILL)
            async with running_worker(settings, queues=[QueueName.DELIVERY]):
                await eventually(
                    lambda: _started_twice(client, key), "another worker took the job over"
                )
                await client.redis.set(f"{key}:release", 1)
                result = await job.result(timeout=30)
            info = await client.job_info(job.job_id)
    finally:
        stop(doomed)
    assert result == {"pid": os.getpid(), "try": 1}  # the lost run did not spend a try
    assert info is not None and info.state == JobState.COMPLETE


async def _started_twice(client: PostroomClient, key: str) -> bool:
    return bool(await client.redis.llen(f"{key}:started") == 2)


async def _state_is(job_id: str, client: PostroomClient, state: JobState) -> bool:
    info = await client.job_info(job_id)
    return info is not None and info.state == state


async def _true(value: bool) -> bool:
    return value


async def test_cluster_cron_ticks_run_once_across_two_worker_processes(
    cluster_settings: PostroomSettings,
) -> None:
    env = {"POSTROOM_TASK_MODULES": "tests.cron_tasks"}
    workers = [
        postroom_worker(cluster_settings, "--queues", "message-cleanup", **env) for _ in range(2)
    ]
    ticks_key = f"{cluster_settings.key_prefix}:ticks"
    try:
        async with await connect_cluster_client(cluster_settings, registry) as client:

            async def four_ticks() -> bool:
                return bool(await client.redis.llen(ticks_key) >= 4)

            await eventually(four_ticks, "four cron ticks ran")
            ran = [job_id.decode() for job_id in await client.redis.lrange(ticks_key, 0, -1)]
    finally:
        codes = [stop(worker) for worker in workers]
    assert len(ran) == len(set(ran)), f"a tick ran twice: {ran}"
    assert codes == [0, 0]


async def test_cluster_queue_starts_its_ready_jobs_by_priority(
    cluster_settings: PostroomSettings,
) -> None:
    tasks = TaskRegistry()
    order = f"{cluster_settings.key_prefix}:order"

    @tasks.task(queue=QueueName.CLEANUP, name="tests.in_order")  # concurrency 1
    async def in_order(ctx: JobContext, label: str) -> None:
        await ctx["redis"].rpush(order, label)

    async with await connect_cluster_client(cluster_settings, tasks) as client:
        await client.pause(QueueName.CLEANUP)
        for priority in (Priority.LOW, Priority.NORMAL, Priority.URGENT, Priority.HIGH):
            await client.enqueue(in_order.call(priority.name), priority=priority)
        async with running_worker(cluster_settings, tasks=tasks, queues=[QueueName.CLEANUP]):
            await client.resume(QueueName.CLEANUP)

            async def all_ran() -> bool:
                return bool(await client.redis.llen(order) == 4)

            await eventually(all_ran, "the four jobs ran")
        ran = [label.decode() for label in await client.redis.lrange(order, 0, -1)]
    assert ran == ["URGENT", "HIGH", "NORMAL", "LOW"]
