"""Worker processes as operators run them: signals, `arq workers.Settings`, `--processes`.

Every wait here is on a condition (a Redis key, a log line, /proc, an exit) with a generous
deadline, never a fixed sleep, and every process a test starts is stopped in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import ROOT, eventually, postroom_worker, running_worker, spawn, worker_env
from tests.sample_tasks import Greeting, echo, sleep_until_released
from workers.client import JobHandle, PostroomClient
from workers.store.job_status import JobState
from workers.store.keys import Keys

DEADLINE = 30.0


async def exit_code(process: subprocess.Popen[bytes]) -> int:
    """The process's exit code; fails if it does not exit by itself within DEADLINE seconds."""
    try:
        return await asyncio.to_thread(process.wait, DEADLINE)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pid {process.pid} did not exit within {DEADLINE:g}s") from None


def terminate(process: subprocess.Popen[bytes], leftovers: Iterable[int] = ()) -> int:
    """SIGTERM (a clean stop) and wait; SIGKILL it and `leftovers` if it hangs. Returns its code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait(timeout=DEADLINE)
        raise AssertionError(f"pid {process.pid} ignored SIGTERM for {DEADLINE:g}s") from None


def logged_worker(
    settings: PostroomSettings, log: Path, *args: str, **env: str
) -> subprocess.Popen[bytes]:
    """`postroom worker` whose output goes to `log`, so a test can wait for a log line."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", *args],
            cwd=ROOT,
            env=worker_env(settings, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def arq_worker(settings: PostroomSettings, **env: str) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "arq", "workers.Settings"], worker_env(settings, **env))


def starts(client: PostroomClient, key: str) -> Callable[[int], Awaitable[bool]]:
    """Whether `sleep_until_released(key)` has started at least `n` times."""

    async def started(n: int) -> bool:
        return bool(await client.redis.llen(f"{key}:started") >= n)

    return started


async def probe(client: PostroomClient, queue: QueueName) -> JobHandle[object]:
    return await client.enqueue_payload(f"tests.probe.{queue.value}", {})


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux: the `children` file of each of its threads)."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for thread in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found.update(int(child) for child in (thread / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_sigterm_lets_running_job_finish_and_exits_zero(
    settings: PostroomSettings, client: PostroomClient, tmp_path: Path
) -> None:
    key = uuid.uuid4().hex
    log = tmp_path / "worker.log"
    # A one-second lease and a second worker: if the draining worker stopped renewing its
    # lease, the second worker would start the job again during the drain.
    worker = logged_worker(
        settings,
        log,
        "--queues",
        "message-delivery",
        POSTROOM_SHUTDOWN_GRACE="30",
        POSTROOM_LEASE_SECONDS="1",
    )
    try:
        job = await client.enqueue(sleep_until_released.call(key))
        await eventually(lambda: starts(client, key)(1), "the job started")
        async with running_worker(settings.model_copy(update={"lease_seconds": 1.0})):
            worker.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                return "draining" in log.read_text()

            await eventually(draining, "the worker logged that it is draining")
            await asyncio.sleep(4)  # four leases into the drain
            assert worker.poll() is None, "the worker exited without waiting for its running job"
            await client.redis.set(f"{key}:release", 1)
            result = await job.result(timeout=DEADLINE)
            code = await exit_code(worker)  # by itself: nothing but the drain is left to do
    finally:
        terminate(worker)
        sys.stderr.write(log.read_text())  # pytest shows it if the test failed
    assert result == {"pid": worker.pid, "try": 1}
    assert code == 0
    assert await client.redis.lrange(f"{key}:started", 0, -1) == [f"{worker.pid}:1".encode()]


async def test_sigterm_requeues_job_longer_than_grace_without_spending_a_try(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    key = uuid.uuid4().hex
    started = starts(client, key)
    first = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_SHUTDOWN_GRACE="1")
    try:
        job = await client.enqueue(sleep_until_released.call(key))
        await eventually(lambda: started(1), "the job started on the first worker")
        first.send_signal(signal.SIGTERM)
        first_code = await exit_code(first)  # after the 1 s grace, the job still unreleased
    finally:
        terminate(first)
    assert first_code == 0
    assert not await client.redis.exists(f"{key}:release")
    assert not await client.redis.exists(client.keys.of(QueueName.DELIVERY).result(job.job_id))
    assert await job.status() == JobState.QUEUED
    queue = Keys(settings.key_prefix).of(QueueName.DELIVERY).queue
    assert await client.redis.zscore(queue, job.job_id) is not None
    assert (
        int(await client.redis.get(client.keys.of(QueueName.DELIVERY).tries(job.job_id)) or 0) == 0
    )

    second = postroom_worker(settings, "--queues", "message-delivery")
    try:
        await eventually(lambda: started(2), "the second worker started the job")
        await client.redis.set(f"{key}:release", 1)
        result = await job.result(timeout=DEADLINE)
    finally:
        second_code = terminate(second)
    assert result == {"pid": second.pid, "try": 1}
    assert await client.redis.lrange(f"{key}:started", 0, -1) == [
        f"{first.pid}:1".encode(),
        f"{second.pid}:1".encode(),
    ]
    assert second_code == 0


async def test_arq_cli_serves_all_six_queues_in_one_process(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    worker = arq_worker(settings)
    try:
        jobs = {queue: await probe(client, queue) for queue in QueueName}
        results = {queue: await job.result(timeout=DEADLINE) for queue, job in jobs.items()}
        worker.send_signal(signal.SIGTERM)
        code = await exit_code(worker)
    finally:
        terminate(worker)
    assert results == {queue: queue.value for queue in QueueName}
    assert code == 0


async def test_worker_queues_setting_limits_the_served_queues(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    served = (QueueName.DELIVERY, QueueName.NOTIFICATION)
    worker = arq_worker(settings, POSTROOM_WORKER_QUEUES=",".join(q.value for q in served))
    try:
        cleanup = await probe(client, QueueName.CLEANUP)
        jobs = {queue: await probe(client, queue) for queue in served}
        results = {queue: await job.result(timeout=DEADLINE) for queue, job in jobs.items()}
        # The served queues' jobs, enqueued after it, are done: the cleanup one is not taken.
        cleanup_status = await cleanup.status()
        worker.send_signal(signal.SIGTERM)
        code = await exit_code(worker)
    finally:
        terminate(worker)
    assert results == {queue: queue.value for queue in served}
    assert cleanup_status == JobState.QUEUED
    assert await cleanup.status() == JobState.QUEUED
    assert code == 0


async def test_process_pool_restarts_a_crashed_child(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    pool = postroom_worker(settings, "--processes", "2", "--queues", "message-delivery")
    seen: set[int] = set()
    try:

        async def two_children() -> bool:
            seen.update(children(pool.pid))
            return len(children(pool.pid)) == 2

        await eventually(two_children, "the pool runs two worker processes")
        before = children(pool.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            now = children(pool.pid)
            seen.update(now)
            return len(now) == 2 and victim not in now and before - {victim} <= now

        await eventually(replaced, "the pool replaced the killed worker process")
        job = await client.enqueue(echo.call(Greeting(messageId="m", text="still here")))
        result = await job.result(timeout=DEADLINE)
        last = children(pool.pid)
        pool.send_signal(signal.SIGTERM)
        code = await exit_code(pool)
    finally:
        terminate(pool, leftovers=seen)
    assert result["text"] == "still here"
    assert code == 0
    assert [pid for pid in seen | last if alive(pid)] == []
