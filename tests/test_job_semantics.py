"""Leases, crash recovery and pause/resume, through real worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, postroom_worker, running_worker
from tests.sample_tasks import Greeting, echo, sleep_until_released
from workers.client import PostroomClient
from workers.store.job_status import JobState
from workers.store.keys import Keys


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


async def test_sigkill_mid_job_is_recovered_by_another_worker_without_spending_a_try(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    settings = settings.model_copy(update={"lease_seconds": 2.0})
    key = uuid.uuid4().hex
    doomed = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_LEASE_SECONDS="2")
    try:
        job = await client.enqueue(sleep_until_released.call(key))
        await eventually(lambda: client.redis.exists(f"{key}:started"), "the job started")
        doomed.kill()
        doomed.wait(timeout=30)
        # The lease, not the job's 600 s timeout, bounds how long the job waits for a worker.
        lease_end = await client.redis.zscore(client.keys.of(QueueName.DELIVERY).active, job.job_id)
        assert lease_end is not None and 0 < lease_end - time.time() * 1000 <= 2000
        await client.redis.set(f"{key}:release", 1)
        async with running_worker(settings):
            result = await job.result(timeout=60)
    finally:
        stop(doomed)
    assert result == {"pid": os.getpid(), "try": 1}
    assert (
        await client.redis.get(
            Keys(settings.key_prefix).of(QueueName.DELIVERY).recoveries(job.job_id)
        )
        == b"1"
    )


async def test_job_outliving_its_lease_on_a_live_worker_is_not_started_twice(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    settings = settings.model_copy(update={"lease_seconds": 1.0})
    key = uuid.uuid4().hex
    other = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_LEASE_SECONDS="1")
    try:
        async with running_worker(settings):
            job = await client.enqueue(sleep_until_released.call(key))
            await eventually(lambda: client.redis.exists(f"{key}:started"), "the job started")
            await asyncio.sleep(5)  # five leases: each would have expired without renewal
            await client.redis.set(f"{key}:release", 1)
            await job.result(timeout=60)
    finally:
        assert stop(other) == 0
    assert await client.redis.llen(f"{key}:started") == 1
    assert await client.redis.get(client.keys.of(QueueName.DELIVERY).tries(job.job_id)) is None


async def test_a_job_whose_worker_keeps_dying_is_dead_lettered_as_stalled(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    settings = settings.model_copy(update={"lease_seconds": 1.0, "max_recoveries": 0})
    key = uuid.uuid4().hex
    doomed = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_LEASE_SECONDS="1")
    try:
        job = await client.enqueue(sleep_until_released.call(key))
        await eventually(lambda: client.redis.exists(f"{key}:started"), "the job started")
        doomed.kill()
        async with running_worker(settings):

            async def dead_lettered() -> bool:
                return await client.dead_letters.get(job.job_id) is not None

            await eventually(dead_lettered, "the job was dead-lettered")
    finally:
        stop(doomed)
    letter = await client.dead_letters.get(job.job_id)
    assert letter is not None
    assert letter.reason == "stalled"
    assert letter.payload == {"key": key}


async def test_paused_queue_starts_nothing_until_resumed(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    await client.pause(QueueName.DELIVERY)
    async with running_worker(settings) as supervisor:

        async def paused_seen() -> bool:
            return supervisor.paused.get(QueueName.DELIVERY) is True

        await eventually(paused_seen, "the worker saw the pause")
        job = await client.enqueue(echo.call(Greeting(messageId="m", text="hi")))
        await asyncio.sleep(1)
        assert await job.status() == JobState.QUEUED
        await client.resume(QueueName.DELIVERY)
        assert (await job.result(timeout=60))["text"] == "hi"
