"""Worker processes as operators run them: signals, `arq workers.Settings`, `--processes`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from arq.constants import retry_key_prefix
from arq.jobs import JobStatus

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import postroom_worker, running_worker, spawn, worker_env
from tests.sample_tasks import Greeting, echo, sleep_until_released
from tests.test_job_semantics import eventually, stop
from workers.client import JobHandle, PostroomClient


def arq_worker(settings: PostroomSettings, **env: str) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "arq", "workers.Settings"], worker_env(settings, **env))


async def _started(client: PostroomClient, key: str) -> bool:
    return bool(await client.redis.exists(f"{key}:started"))


async def test_sigterm_lets_a_running_job_finish_and_exits_zero(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    key = uuid.uuid4().hex
    worker = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_SHUTDOWN_GRACE="60")
    try:
        job = await client.enqueue(sleep_until_released.call(key))
        await eventually(lambda: _started(client, key), "the job started")
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert worker.poll() is None, "the worker exited before its job finished"
        await client.redis.set(f"{key}:release", 1)
        result = await job.result(timeout=60)
        code = await asyncio.to_thread(worker.wait, 60)  # exits by itself once drained
    finally:
        stop(worker)
    assert result == {"pid": worker.pid, "try": 1}
    assert code == 0


async def test_sigterm_puts_back_a_job_longer_than_the_grace_without_spending_a_try(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    key = uuid.uuid4().hex
    first = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_SHUTDOWN_GRACE="1")
    try:
        job = await client.enqueue(sleep_until_released.call(key))
        await eventually(lambda: _started(client, key), "the job started")
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 60) == 0
    finally:
        stop(first)
    assert await job.status() == JobStatus.queued
    assert int(await client.redis.get(retry_key_prefix + job.job_id) or 0) == 0
    await client.redis.set(f"{key}:release", 1)
    async with running_worker(settings):
        result = await job.result(timeout=60)
    assert result == {"pid": os.getpid(), "try": 1}


async def _probe(client: PostroomClient, queue: QueueName) -> JobHandle[object]:
    return await client.enqueue_payload(f"tests.probe.{queue.value}", {})


async def test_arq_cli_serves_all_six_queues_in_one_process_and_exits_zero_on_sigterm(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    worker = arq_worker(settings)
    try:
        jobs = {queue: await _probe(client, queue) for queue in QueueName}
        results = {queue: await job.result(timeout=60) for queue, job in jobs.items()}
    finally:
        code = stop(worker)
    assert results == {queue: queue.value for queue in QueueName}
    assert code == 0


async def test_worker_queues_setting_limits_the_queues_a_process_serves(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    served = "message-delivery,message-notification"
    worker = arq_worker(settings, POSTROOM_WORKER_QUEUES=served)
    try:
        cleanup = await _probe(client, QueueName.CLEANUP)
        for queue in (QueueName.DELIVERY, QueueName.NOTIFICATION):
            assert await (await _probe(client, queue)).result(timeout=60) == queue.value
        assert await cleanup.status() == JobStatus.queued
    finally:
        assert stop(worker) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


async def test_process_pool_restarts_a_crashed_child(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    pool = postroom_worker(settings, "--processes", "2", "--queues", "message-delivery")
    try:

        async def two_children() -> bool:
            return len(_children(pool.pid)) == 2

        await eventually(two_children, "two worker processes run")
        before = _children(pool.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            now = _children(pool.pid)
            return len(now) == 2 and victim not in now

        await eventually(replaced, "the killed worker was replaced")
        job = await client.enqueue(echo.call(Greeting(messageId="m", text="still here")))
        assert (await job.result(timeout=60))["text"] == "still here"
        children = _children(pool.pid)
    finally:
        code = stop(pool)
    assert code == 0
    assert not any(_alive(child) for child in children)
