"""The client side on a Redis Cluster (`POSTROOM_REDIS_CLUSTER`, workers/cluster_client.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.servers.cluster import LocalCluster
from workers.cluster_client import connect_cluster, connect_cluster_client
from workers.connection.redis_server import EmbeddedRedis, resolve_redis
from workers.registry import registry
from workers.store.dead_letter import try_error
from workers.store.enqueue import Checkpoint
from workers.store.job_status import JobState


def cluster_settings(nodes: str, data_dir: Path) -> PostroomSettings:
    return load_settings(
        redis_cluster=nodes, key_prefix=f"test-{uuid.uuid4().hex[:10]}", data_dir=data_dir
    )


async def test_cluster_client_enqueues_into_all_six_queues(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """One node named is enough; each queue's job lands on its slot's node, readable back."""
    host, port = redis_cluster.startup_nodes[0]
    settings = cluster_settings(f"{host}:{port}", tmp_path)
    requests = [registry.get(f"tests.probe.{q.value}").call().with_options() for q in QueueName]
    async with await connect_cluster_client(settings) as client:
        handles = await client.enqueue_many(requests)
        assert [h.created for h in handles] == [True] * len(QueueName)
        again = await client.enqueue_many(
            [r.with_options(job_id=h.job_id) for r, h in zip(requests, handles, strict=True)]
        )
        assert [h.created for h in again] == [False] * len(QueueName)
        assert [await h.status() for h in handles] == [JobState.QUEUED] * len(QueueName)

        await client.pause(QueueName.INDEXING)
        assert await client.is_paused(QueueName.INDEXING)
        await client.resume(QueueName.INDEXING)
        assert not await client.is_paused(QueueName.INDEXING)

        assert await handles[0].cancel() == "cancelled"
        stats = {s.queue: s for s in await client.queues_stats()}
    assert stats[QueueName.DELIVERY].waiting == 0
    assert stats[QueueName.DELIVERY].cancelled == 1
    assert all(stats[q].waiting == 1 for q in QueueName if q is not QueueName.DELIVERY)


async def test_cluster_client_writes_a_checkpointed_chunk_and_retries_a_dead_letter(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The client's atomic steps are scripts, so they run on a Cluster (no MULTI there)."""
    host, port = redis_cluster.startup_nodes[0]
    settings = cluster_settings(f"{host}:{port}", tmp_path)
    probe = registry.get(f"tests.probe.{QueueName.BATCH.value}")
    async with await connect_cluster_client(settings) as client:
        keys = client.keys.of(QueueName.BATCH)
        mark = Checkpoint(keys.checkpoint("batch:b"), "2", 60_000)
        chunk = [probe.call().with_options(job_id=f"chunk-{i}") for i in (1, 2)]
        handles = await client.enqueue_many(chunk, checkpoint=mark)
        assert [h.created for h in handles] == [True, True]
        assert await client.redis.get(mark.key) == b"2"

        await client.dead_letters.add(
            job_id="dead", task=probe.name, queue=QueueName.BATCH, payload={},
            reason="permanent", tries=1, last_error=try_error(1, RuntimeError("boom")),
            enqueued_at=None,
        )  # fmt: skip
        assert await client.dead_letters.count(QueueName.BATCH) == 1
        assert await client.dead_letters.retry("dead", QueueName.BATCH)
        assert await client.dead_letters.count(QueueName.BATCH) == 0
        assert await client.job("dead", probe).status() is JobState.QUEUED


async def test_cluster_setting_naming_a_standalone_server_is_refused(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = cluster_settings(f"127.0.0.1:{redis_server.port}", tmp_path)
    with pytest.raises(ConfigError, match=r"POSTROOM_REDIS_CLUSTER=.* is a standalone Redis"):
        await connect_cluster(settings)


async def test_cluster_setting_naming_no_server_is_refused(tmp_path: Path) -> None:
    settings = cluster_settings("127.0.0.1:1", tmp_path)
    with pytest.raises(ConfigError, match=r"POSTROOM_REDIS_CLUSTER=127\.0\.0\.1:1: no Cluster"):
        await connect_cluster(settings)


def test_cluster_setting_must_list_host_ports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"POSTROOM_REDIS_CLUSTER: .*host:port, not 'b:x'"):
        cluster_settings("a:1, b:x", tmp_path)


def test_redis_url_naming_a_cluster_node_is_refused_naming_the_setting(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The reverse mix-up: one connection to one node would reach only its slots."""
    settings = load_settings(redis_url=redis_cluster.url, data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"REDIS_URL: .* is a node of a Redis Cluster"):
        resolve_redis(settings)
