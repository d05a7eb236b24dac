"""postroom on a Sentinel deployment: jobs run through it, survive a failover, bad settings stop.

The failover test kills the primary (SIGKILL) under a steady load of enqueues and reports
what Redis's asynchronous replication lost: enqueues the dead primary acknowledged but had
not yet streamed to its replica. With POSTROOM_ENQUEUE_WAIT_REPLICAS=1 an acknowledged
enqueue is on the replica, so that number must be zero.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.conftest import ROOT, eventually, running_worker, spawn
from tests.servers.processes import free_port
from tests.servers.sentinel import SERVICE, SentinelSet
from workers import JobContext, task
from workers.client import PostroomClient
from workers.connection.connections import arq_redis, redis_settings
from workers.connection.redis_server import resolve_redis
from workers.connection.transient import is_transient
from workers.errors import NotReplicatedError
from workers.store.job_status import JobState

# Runs of each job id in this process (the in-loop worker's), to count repeated runs.
RUNS: Counter[str] = Counter()
ENDED = {JobState.COMPLETE, JobState.DEAD_LETTERED}


@task(queue=QueueName.DELIVERY, name="tests.sentinel.record")
async def record(ctx: JobContext, n: int) -> int:
    RUNS[ctx["job_id"]] += 1
    return n


def sentinel_settings(deployment: SentinelSet, tmp_path: Path, **extra: Any) -> PostroomSettings:
    return load_settings(
        redis_sentinels=deployment.addresses,
        redis_sentinel_master=SERVICE,
        redis_password=deployment.password,
        redis_sentinel_password=deployment.sentinel_password,
        key_prefix=f"test-{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        shutdown_grace=5,
        # A run whose end the failover lost is retaken this soon (it is the job's lease).
        lease_seconds=2,
        results_per_queue=100_000,
        **extra,
    )


async def test_jobs_run_through_sentinel_with_passwords_for_both(
    guarded_sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    sentinel_set = guarded_sentinel_set
    settings = sentinel_settings(sentinel_set, tmp_path)
    async with await PostroomClient.connect(settings) as client, running_worker(settings):
        assert isinstance(client.redis, ArqRedis)
        assert isinstance(client.redis.connection_pool, SentinelConnectionPool)
        handles = [await client.enqueue(record.call(n)) for n in range(20)]
        assert [await handle.result(timeout=30) for handle in handles] == list(range(20))
        # The jobs went to the primary the sentinels name.
        with sentinel_set.primary().client() as primary:
            assert primary.exists(client.keys.of(QueueName.DELIVERY).result(handles[0].job_id))


async def enqueue_acknowledged(client: PostroomClient, job_id: str, n: int) -> None:
    """Enqueue until the client answers, repeating the same id after a transient error (the
    README's rule: the repeat either writes the job or finds it)."""
    while True:
        try:
            await client.enqueue(record.call(n), job_id=job_id)
            return
        except NotReplicatedError:
            pass
        except Exception as exc:
            if not is_transient(exc):
                raise
        await asyncio.sleep(0.02)


async def steady_load(client: PostroomClient, acked: list[str], stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        job_id = f"{client.settings.key_prefix}-{n}"
        await enqueue_acknowledged(client, job_id, n)
        acked.append(job_id)
        n += 1
        await asyncio.sleep(0.002)


async def final_states(client: PostroomClient, job_ids: list[str]) -> dict[str, JobState | None]:
    """Each job's state once none is queued or running any more (None: nothing of it left)."""
    while True:
        infos = [await client.job_info(job_id) for job_id in job_ids]
        states = {
            j: None if info is None else info.state for j, info in zip(job_ids, infos, strict=True)
        }
        if all(state is None or state in ENDED for state in states.values()):
            return states
        await asyncio.sleep(0.1)


def at_least(acked: list[str], count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(acked) >= count

    return check


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["async-replication", "wait-1-replica"])
async def test_sentinel_failover_under_load_keeps_jobs_flowing(
    sentinel_set: SentinelSet,
    tmp_path: Path,
    wait_replicas: int,
    record_property: Any,
) -> None:
    settings = sentinel_settings(
        sentinel_set, tmp_path, enqueue_wait_replicas=wait_replicas, enqueue_wait_timeout=0.5
    )
    acked: list[str] = []
    stop = asyncio.Event()
    async with await PostroomClient.connect(settings) as client, running_worker(settings):
        load = asyncio.create_task(steady_load(client, acked, stop))
        await eventually(at_least(acked, 200), "200 enqueues were acknowledged")
        old = await asyncio.to_thread(sentinel_set.kill_primary)
        acked_at_kill = len(acked)
        new = await asyncio.to_thread(sentinel_set.wait_for_failover, old)
        assert new is not old
        # The dead node comes back as the new primary's replica (WAIT needs one).
        await asyncio.to_thread(sentinel_set.rejoin, old)
        after_failover = len(acked)
        await eventually(at_least(acked, after_failover + 100), "enqueues go on after failover")
        stop.set()
        await load
        async with asyncio.timeout(120):
            states = await final_states(client, acked)

    lost = [job_id for job_id, state in states.items() if state is None]
    repeated = [job_id for job_id in acked if RUNS[job_id] > 1]
    # Jobs keep flowing: every job acknowledged after the failover ran to its end.
    assert all(states[job_id] in ENDED for job_id in acked[after_failover:])
    # Every acknowledged job ended (completed or dead-lettered), or replication lost it.
    assert all(state in ENDED for state in states.values() if state is not None)
    if wait_replicas:
        assert lost == [], f"acknowledged on a replica, yet lost: {lost}"
    # Only what the dead primary acknowledged can be lost: the jobs enqueued before the kill.
    assert set(lost) <= set(acked[:acked_at_kill])
    figures = {
        "acknowledged": len(acked),
        "acknowledged_before_kill": acked_at_kill,
        "lost": len(lost),
        "ran_more_than_once": len(repeated),
    }
    record_property("replication_loss", figures)
    print(f"\nsentinel failover (POSTROOM_ENQUEUE_WAIT_REPLICAS={wait_replicas}): {figures}")


async def test_sentinel_wait_acknowledges_an_enqueue_only_once_a_replica_has_it(
    guarded_sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """The replica stalls: a plain enqueue is acknowledged by the primary alone (a failover
    now would lose it), one with POSTROOM_ENQUEUE_WAIT_REPLICAS=1 raises instead."""
    plain = sentinel_settings(guarded_sentinel_set, tmp_path)
    waiting = plain.model_copy(update={"enqueue_wait_replicas": 1, "enqueue_wait_timeout": 0.2})
    replica = next(n for n in guarded_sentinel_set.nodes if n is not guarded_sentinel_set.primary())
    async with (
        await PostroomClient.connect(plain) as fast,
        await PostroomClient.connect(waiting) as safe,
    ):
        assert (await safe.enqueue(record.call(1))).created  # the replica has it
        replica.suspend()
        try:
            assert (await fast.enqueue(record.call(2))).created
            with pytest.raises(NotReplicatedError, match="confirmed by 0 of") as caught:
                await safe.enqueue(record.call(3), job_id="stalled")
            assert caught.value.job_ids == ["stalled"]
        finally:
            replica.resume()
        # Repeated with the same id once the replica is back: found, and now on the replica.
        again = await safe.enqueue(record.call(3), job_id="stalled")
        assert not again.created


def test_bad_sentinel_settings_stop_with_the_setting_named(
    guarded_sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    sentinel_set = guarded_sentinel_set
    passwords = {"redis_password": "data-pw", "redis_sentinel_password": "sentinel-pw"}

    def refused(**settings: Any) -> str:
        with pytest.raises(ConfigError) as caught:
            resolve_redis(load_settings(data_dir=tmp_path, **{**passwords, **settings}))
        return str(caught.value)

    with pytest.raises(
        ConfigError, match=r"POSTROOM_REDIS_SENTINELS: .*'127\.0\.0\.1' is not host:port"
    ):
        load_settings(redis_sentinels="127.0.0.1:26379,127.0.0.1")
    with pytest.raises(ConfigError, match=r"POSTROOM_REDIS_SENTINELS: .*combined with REDIS_URL"):
        load_settings(redis_sentinels=sentinel_set.addresses, redis_url="redis://127.0.0.1:1")

    nobody = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    assert "POSTROOM_REDIS_SENTINELS: no sentinel answered" in refused(redis_sentinels=nobody)
    message = refused(redis_sentinels=sentinel_set.addresses, redis_sentinel_master="nosuch")
    assert "POSTROOM_REDIS_SENTINEL_MASTER" in message and f"they watch: {SERVICE}" in message
    data_node = sentinel_set.primary().address
    message = refused(redis_sentinels=data_node)
    assert f"POSTROOM_REDIS_SENTINELS: {data_node} is a Redis server" in message
    sentinel = sentinel_set.sentinels[0]
    message = refused(redis_url=f"redis://:sentinel-pw@{sentinel.address}")
    assert f"REDIS_URL: {sentinel.address} is a Redis Sentinel" in message
    message = refused(redis_sentinels=sentinel_set.addresses, redis_sentinel_password="wrong")
    assert "POSTROOM_REDIS_SENTINEL_PASSWORD: the sentinel at" in message
    assert "wrong" not in message.replace("refused it", "")
    message = refused(redis_sentinels=sentinel_set.addresses, redis_password="wrong")
    assert "REDIS_PASSWORD: the primary at" in message

    # The right settings pass, and nothing embedded is started.
    right = load_settings(data_dir=tmp_path, redis_sentinels=sentinel_set.addresses, **passwords)
    target, server = resolve_redis(right)
    assert server is None and target.sentinel and target.sentinel_master == SERVICE


def test_a_worker_given_a_data_node_as_sentinel_exits_naming_the_setting(
    guarded_sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    data_node = guarded_sentinel_set.primary().address
    env = {
        **os.environ,
        "POSTROOM_REDIS_SENTINELS": data_node,
        "REDIS_PASSWORD": "data-pw",
        "POSTROOM_REDIS_SENTINEL_PASSWORD": "sentinel-pw",
        "POSTROOM_DATA_DIR": str(tmp_path),
    }
    worker = subprocess.run(
        [sys.executable, "-m", "workers", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2
    assert f"POSTROOM_REDIS_SENTINELS: {data_node} is a Redis server" in worker.stderr


def sentinel_env(settings: PostroomSettings, deployment: SentinelSet) -> dict[str, str]:
    """A worker process's environment: the sentinels in place of REDIS_URL."""
    return {
        **os.environ,
        "POSTROOM_REDIS_SENTINELS": deployment.addresses,
        "POSTROOM_REDIS_SENTINEL_MASTER": SERVICE,
        "REDIS_PASSWORD": str(deployment.password),
        "POSTROOM_REDIS_SENTINEL_PASSWORD": str(deployment.sentinel_password),
        "POSTROOM_KEY_PREFIX": settings.key_prefix,
        "POSTROOM_TASK_MODULES": "tests.sample_tasks",
        "POSTROOM_DATA_DIR": str(settings.data_dir),
    }


@pytest.mark.parametrize(
    "command",
    [["-m", "arq", "workers.Settings"], ["-m", "workers", "worker", "--processes", "2"]],
    ids=["arq-settings", "two-processes"],
)
async def test_sentinel_settings_reach_every_worker_entry_point(
    guarded_sentinel_set: SentinelSet, tmp_path: Path, command: list[str]
) -> None:
    """The environment alone, read by `arq workers.Settings` or by `--processes` children."""
    settings = sentinel_settings(guarded_sentinel_set, tmp_path)
    worker = spawn([sys.executable, *command], sentinel_env(settings, guarded_sentinel_set))
    try:
        async with await PostroomClient.connect(settings) as client:
            jobs = [
                await client.enqueue_payload("tests.probe.message-delivery", {}) for _ in range(4)
            ]
            assert [await job.result(timeout=60) for job in jobs] == ["message-delivery"] * 4
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0


async def test_sentinel_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_REDIS_SENTINELS", "s1.internal:26379, [::1]:26380")
    monkeypatch.setenv("POSTROOM_REDIS_SENTINEL_MASTER", "postroom")
    monkeypatch.setenv("POSTROOM_REDIS_SENTINEL_PASSWORD", "hunter2-sentinel")
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2-data")
    monkeypatch.setenv("POSTROOM_REDIS_TLS", "true")
    target = redis_settings(load_settings())
    assert target.sentinel and target.ssl
    assert target.host == [("s1.internal", 26379), ("::1", 26380)]
    assert (target.sentinel_master, target.password, target.sentinel_password) == (
        "postroom",
        "hunter2-data",
        "hunter2-sentinel",
    )
    # TLS reaches both kinds of connection: to the sentinels and to the data nodes.
    pool = arq_redis(target)
    try:
        data = pool.connection_pool
        assert isinstance(data, SentinelConnectionPool)
        assert issubclass(data.connection_class, SSLConnection)
        sentinels = data.sentinel_manager.sentinels
        assert all(issubclass(s.connection_pool.connection_class, SSLConnection) for s in sentinels)
        assert sentinels[0].connection_pool.connection_kwargs["password"] == "hunter2-sentinel"
    finally:
        await pool.aclose()
    monkeypatch.setenv("POSTROOM_REDIS_SENTINELS", "s1.internal:26379,s2.internal:0")
    with pytest.raises(ConfigError, match="POSTROOM_REDIS_SENTINELS") as caught:
        load_settings()
    assert "'s2.internal:0' is not host:port" in str(caught.value)
    monkeypatch.setenv("POSTROOM_REDIS_SENTINELS", "s1.internal:26379")
    monkeypatch.setenv("POSTROOM_REDIS_CA_FILE", "/no/such/ca.pem")
    with pytest.raises(ConfigError, match="POSTROOM_REDIS_CA_FILE"):
        load_settings()
