"""Outages: a run that ends while Redis is away keeps its outcome, and a worker that lost its
lease while stopped leaves the job to the worker that took it over (fencing)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from config.queues import BackoffPolicy, QueueName
from config.settings import PostroomSettings, load_settings
from tests.conftest import eventually, postroom_worker, running_worker
from tests.sample_tasks import sleep_until_released
from tests.test_job_semantics import stop
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis
from workers.context import JobContext
from workers.registry import TaskRegistry


@pytest.mark.parametrize("redis_restart", [False, True], ids=["redis-up", "redis-restarted"])
async def test_outage_a_stopped_worker_past_its_lease_leaves_the_job_to_the_one_that_took_it(
    tmp_path: Path, unused_tcp_port: int, redis_restart: bool
) -> None:
    """SIGSTOPped past its lease, a worker's job is recovered elsewhere (with, or without,
    Redis restarted meanwhile); resumed, the stopped worker learns it lost the job, stops its
    run, writes nothing (the recovering worker's lease and marker are untouched) and takes
    back the recovery it did not cause."""
    server = EmbeddedRedis(tmp_path / "redis", port=unused_tcp_port).start()
    settings = settings_on(server, tmp_path, "stopped", lease_seconds=2.0)
    key = uuid.uuid4().hex
    stopped = postroom_worker(settings, "--queues", "message-delivery", POSTROOM_LEASE_SECONDS="2")
    try:
        async with await PostroomClient.connect(settings) as client:
            queue = client.keys.of(QueueName.DELIVERY)
            job = await client.enqueue(sleep_until_released.call(key))
            await eventually(lambda: client.redis.exists(f"{key}:started"), "the job started")
            os.kill(stopped.pid, signal.SIGSTOP)
            if redis_restart:
                server.stop()
                server = EmbeddedRedis(tmp_path / "redis", port=unused_tcp_port).start()
                # The client's pooled connection died with the server: it raises once.
                with contextlib.suppress(RedisConnectionError):
                    await client.redis.ping()
            async with running_worker(settings, queues=[QueueName.DELIVERY]) as here:

                async def taken_over() -> bool:
                    return bool(await client.redis.llen(f"{key}:started") == 2)

                await eventually(taken_over, "the job was taken over")
                token = await client.redis.get(queue.running(job.job_id))
                assert token is not None
                assert token.decode().startswith(f"{here.runtime.worker_id}/")
                assert await client.redis.get(queue.recoveries(job.job_id)) == b"1"

                os.kill(stopped.pid, signal.SIGCONT)

                async def recovery_taken_back() -> bool:
                    return bool(await client.redis.get(queue.recoveries(job.job_id)) == b"0")

                await eventually(recovery_taken_back, "the resumed worker learnt it lost the job")
                assert await client.redis.get(queue.running(job.job_id)) == token
                lease_end = await client.redis.zscore(queue.active, job.job_id)
                assert lease_end is not None and lease_end > time.time() * 1000
                await client.redis.set(f"{key}:release", 1)
                result = await job.result(timeout=30)
            stats = await client.queue_stats(QueueName.DELIVERY)
            orphans = await client.redis.zcard(queue.queue)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
        assert stop(stopped) == 0
        server.stop()
    assert result == {"pid": os.getpid(), "try": 1}
    assert (stats.completed, stats.failed, stats.retried) == (1, 0, 0)
    assert (stats.waiting, stats.active, stats.delayed) == (0, 0, 0)
    assert orphans == 0  # no orphan entry


def settings_on(
    server: EmbeddedRedis, data_dir: Path, prefix: str, **extra: Any
) -> PostroomSettings:
    """Settings of a test's own Redis `server`."""
    return load_settings(
        redis_url=server.url, key_prefix=prefix, data_dir=data_dir, shutdown_grace=5, **extra
    )


@pytest.fixture
def restartable_redis(tmp_path: Path, unused_tcp_port: int) -> EmbeddedRedis:
    """A Redis of this test alone, on a fixed port and AOF, so it can stop and start again."""
    return EmbeddedRedis(tmp_path / "redis", port=unused_tcp_port)


async def test_outage_a_try_failing_while_redis_is_down_is_retried_once_redis_is_back(
    restartable_redis: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The try fails while Redis is stopped: its end (the try's error, its retry) cannot be
    written, and is written once Redis is back; the job then runs its second try."""
    tasks = TaskRegistry()
    failing = asyncio.Event()

    @tasks.task(
        queue=QueueName.DELIVERY, max_tries=3, backoff=BackoffPolicy(base=0.05, jitter=False)
    )
    async def flaky(ctx: JobContext, n: int) -> int:
        if ctx["job_try"] == 1:
            await failing.wait()
            raise RuntimeError("the provider timed out")
        return n * ctx["job_try"]

    server = restartable_redis.start()
    port = server.port
    settings = settings_on(server, tmp_path, "outage")
    try:
        async with (
            await PostroomClient.connect(settings, tasks) as client,
            running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]),
        ):
            job = await client.enqueue(flaky.call(21))
            marker = client.keys.of(QueueName.DELIVERY).running(job.job_id)
            await eventually(lambda: client.redis.exists(marker), "the job runs")
            server.stop()
            with caplog.at_level(logging.WARNING, logger="workers.runner.claimed_run"):
                failing.set()

                async def end_failed() -> bool:
                    return "its end could not be written" in caplog.text

                await eventually(end_failed, "the run's end failed to be written")
            server = EmbeddedRedis(tmp_path / "redis", port=port).start()
            assert await job.result(timeout=60) == 42
            info = await client.job_info(job.job_id)
            stats = await client.queue_stats(QueueName.DELIVERY)
    finally:
        server.stop()
    assert info is not None and info.tries == 2
    assert (stats.completed, stats.retried, stats.failed, stats.dead_lettered) == (1, 1, 1, 0)


@pytest.mark.parametrize("outage", ["stopped", "restarted"])
async def test_outage_an_enqueue_that_raised_is_retried_safely_with_the_same_job_id(
    restartable_redis: EmbeddedRedis, tmp_path: Path, outage: str
) -> None:
    """The enqueue raises while Redis is away: with Redis stopped (SIGSTOP) it may already
    be written, once Redis reads its socket; with Redis killed and restarted it is not. Either
    way the retry with the same job id leaves exactly one job, and it runs once."""
    tasks = TaskRegistry()

    @tasks.task(queue=QueueName.DELIVERY, name="tests.count_runs")
    async def count_runs(ctx: JobContext, key: str) -> int:
        return int(await ctx["redis"].incr(key))

    server = restartable_redis.start()
    port = server.port
    settings = settings_on(server, tmp_path, "enqueue-outage")
    job_id, runs = f"send:{uuid.uuid4().hex}", f"runs:{uuid.uuid4().hex}"
    try:
        async with await PostroomClient.connect(settings, tasks) as client:
            pid = int((await client.redis.info("server"))["process_id"])
            if outage == "stopped":
                os.kill(pid, signal.SIGSTOP)
            else:
                server.stop()
            try:
                with pytest.raises((TimeoutError, RedisConnectionError, OSError)):
                    async with asyncio.timeout(1):  # the web app's own request timeout
                        await client.enqueue(count_runs.call(runs), job_id=job_id)
            finally:
                if outage == "stopped":
                    os.kill(pid, signal.SIGCONT)
                else:
                    server = EmbeddedRedis(tmp_path / "redis", port=port).start()
            job_key = client.keys.of(QueueName.DELIVERY).job(job_id)
            written_before = bool(await client.redis.exists(job_key))
            retried = await client.enqueue(count_runs.call(runs), job_id=job_id)
            again = await client.enqueue(count_runs.call(runs), job_id=job_id)
            assert retried.created is not written_before
            assert again.created is False
            async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):
                assert await retried.result(timeout=30) == 1
            assert await client.redis.get(runs) == b"1"
            stats = await client.queue_stats(QueueName.DELIVERY)
            assert (stats.completed, stats.waiting, stats.delayed) == (1, 0, 0)
    finally:
        server.stop()


async def test_outage_a_run_ending_while_redis_is_paused_keeps_its_outcome_and_try_count(
    restartable_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Redis stops serving writes (CLIENT PAUSE) just as a try fails and, later, as the next
    one completes: each end waits for Redis and is written once, with the right try count."""
    tasks = TaskRegistry()
    started = {1: asyncio.Event(), 2: asyncio.Event()}
    ending = {1: asyncio.Event(), 2: asyncio.Event()}

    @tasks.task(
        queue=QueueName.DELIVERY, max_tries=3, backoff=BackoffPolicy(base=0.05, jitter=False)
    )
    async def ends_during_pause(ctx: JobContext, n: int) -> int:
        started[ctx["job_try"]].set()
        await ending[ctx["job_try"]].wait()
        if ctx["job_try"] == 1:
            raise RuntimeError("the provider refused")
        return n * ctx["job_try"]

    server = restartable_redis.start()
    settings = settings_on(server, tmp_path, "paused")
    try:
        async with (
            await PostroomClient.connect(settings, tasks) as client,
            running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]),
        ):
            job = await client.enqueue(ends_during_pause.call(21))
            for attempt in (1, 2):
                async with asyncio.timeout(30):
                    await started[attempt].wait()
                await client.redis.client_pause(1000, all=False)
                ending[attempt].set()
            assert await job.result(timeout=30) == 42
            info = await client.job_info(job.job_id)
            stats = await client.queue_stats(QueueName.DELIVERY)
    finally:
        server.stop()
    assert info is not None and info.tries == 2
    assert (stats.completed, stats.retried, stats.failed, stats.dead_lettered) == (1, 1, 1, 0)
    assert (stats.waiting, stats.active, stats.delayed) == (0, 0, 0)


async def test_outage_a_worker_whose_runs_all_wait_to_write_their_ends_does_not_rerun_them(
    restartable_redis: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every slot is held by a run that cannot write its end or still runs, so the poll loop
    makes no Redis call and never sees the outage; the leases lapse while Redis is down.
    Redis back, a slot frees: the worker must not retake its own lapsed run, which is still
    waiting to write its end (found by the chaos soak: the job ran twice in one process, and
    the two runs of one id crashed the worker)."""
    tasks = TaskRegistry()
    runs: list[str] = []
    gates = {"a": asyncio.Event(), "b": asyncio.Event()}

    @tasks.task(queue=QueueName.DELIVERY)
    async def held(ctx: JobContext, name: str) -> str:
        runs.append(name)
        await gates[name].wait()
        return name

    server = restartable_redis.start()
    port = server.port
    settings = settings_on(
        server,
        tmp_path,
        "outage",
        lease_seconds=1.0,
        queues={"message_delivery": {"concurrency": 2}},
    )
    try:
        async with (
            await PostroomClient.connect(settings, tasks) as client,
            running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]),
        ):
            a, b = await client.enqueue(held.call("a")), await client.enqueue(held.call("b"))

            async def both_run() -> bool:
                return len(runs) == 2

            await eventually(both_run, "both jobs run")
            server.stop()
            with caplog.at_level(logging.WARNING, logger="workers.runner.claimed_run"):
                gates["a"].set()

                async def end_failed() -> bool:
                    return f"job {a.job_id}: its end could not be written" in caplog.text

                await eventually(end_failed, "a's end failed to be written")
            await asyncio.sleep(2 * settings.lease_seconds)  # the leases lapse meanwhile
            server = EmbeddedRedis(tmp_path / "redis", port=port).start()
            gates["b"].set()  # b ends at once, freeing a slot while a's end still waits
            assert await b.result(timeout=30) == "b"
            assert await a.result(timeout=30) == "a"
            stats = await client.queue_stats(QueueName.DELIVERY)
    finally:
        server.stop()
    assert sorted(runs) == ["a", "b"]  # a ran once
    assert (stats.completed, stats.waiting, stats.active, stats.delayed) == (2, 0, 0, 0)
